/**
 * Transport compression (`zlib-stream`, `zstd-stream`): one decompression context per
 * connection. The core only defines the contract; runtimes provide the codecs.
 */
import { Context, Effect, type Scope } from "effect"
import { CompressionUnavailable, type DecodeError } from "./GatewayError.ts"
import type { Compression } from "./Protocol.ts"

export interface Decompressor {
  /**
   * Decompresses the binary frames of one read, in order, and returns the gateway messages
   * they complete (a zlib message may span frames, so there can be fewer messages than
   * frames; never more). One call per batch, so a codec that has to go asynchronous pays for
   * that once per batch, never once per event. The output of one call is bounded by
   * `maxBatchBytes`, and a codec stops decompressing as soon as a bound is crossed.
   */
  readonly decompress: (
    frames: ReadonlyArray<Uint8Array>,
  ) => Effect.Effect<ReadonlyArray<string>, DecodeError>
}

export interface DecompressorOptions {
  /** A decompressed message larger than this is refused with a `DecodeError` ("size"). */
  readonly maxMessageBytes: number
  /**
   * The decompressed output of one batch (one read's frames) larger than this is refused
   * with a `DecodeError` ("size"): what bounds memory against a bomb of many messages, each
   * under `maxMessageBytes`. Default: `2 × maxMessageBytes` (64 MiB with the defaults), room
   * for a largest message and many ordinary ones.
   */
  readonly maxBatchBytes?: number | undefined
}

/** The batch bound of `options`, its default applied. */
export const maxBatchBytes = (options: DecompressorOptions): number =>
  options.maxBatchBytes ?? 2 * options.maxMessageBytes

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
