/**
 * Transport compression (`zlib-stream`, `zstd-stream`): one decompression context per
 * connection. The core only defines the contract; runtimes provide the codecs.
 */
import { Context, Effect, type Result, type Scope } from "effect"
import { CompressionUnavailable, type DecodeError } from "./GatewayError.ts"
import type { Compression } from "./Protocol.ts"

export interface Decompressor {
  /**
   * Feeds one WebSocket message. Returns the gateway message it completes as text, or
   * `undefined` when the message continues in later frames (zlib-stream). Synchronous: the
   * hot path must not pay an async round trip per event.
   */
  readonly push: (chunk: Uint8Array) => Result.Result<string | undefined, DecodeError>
}

export interface DecompressorOptions {
  /** A decompressed message larger than this is refused with a `DecodeError` ("size"). */
  readonly maxMessageBytes: number
}

export interface GatewayCompressionService {
  /** A fresh context for one connection; released with the connection's scope. */
  readonly make: (
    kind: Exclude<Compression, "none">,
    options: DecompressorOptions,
  ) => Effect.Effect<Decompressor, CompressionUnavailable, Scope.Scope>
}

export const GatewayCompression = Context.Reference<GatewayCompressionService>("@vigil/gateway/Compression", {
  // A runtime without codecs says so, typed, instead of failing on the first frame.
  defaultValue: () => ({
    make: (kind) => Effect.fail(new CompressionUnavailable({ compression: kind })),
  }),
})

/** Default ceiling for one decompressed gateway message: 32 MiB, far above Discord's largest. */
export const defaultMaxMessageBytes = 32 * 1024 * 1024
