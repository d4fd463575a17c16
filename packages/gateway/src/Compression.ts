/**
 * Transport compression (`zlib-stream`, `zstd-stream`): one decompression context per
 * connection. The core only defines the contract; runtimes provide the codecs.
 */
import { Context, Effect, Result, type Scope } from "effect"
import { CompressionUnavailable, type DecodeError } from "./GatewayError.ts"
import type { Compression } from "./Protocol.ts"

export interface Decompressor {
  /**
   * Decompresses the binary frames of one read, in order, and returns the gateway messages
   * they complete (a zlib message may span frames, so there can be fewer messages than
   * frames). One call per batch, so a codec that has to go asynchronous pays for that once
   * per batch, never once per event.
   */
  readonly decompress: (
    frames: ReadonlyArray<Uint8Array>,
  ) => Effect.Effect<ReadonlyArray<string>, DecodeError>
}

/** A synchronous codec, fed one frame at a time: the message it completes, or undefined. */
export type Push = (chunk: Uint8Array) => Result.Result<string | undefined, DecodeError>

export interface PushDecompressor {
  readonly push: Push
}

/** Runs a synchronous codec over a batch in one step. */
export const fromPush = (push: Push): Decompressor => ({
  decompress: (frames) =>
    Effect.suspend(() => {
      const messages: Array<string> = []
      for (const frame of frames) {
        const out = push(frame)
        if (Result.isFailure(out)) return Effect.fail(out.failure)
        if (out.success !== undefined) messages.push(out.success)
      }
      return Effect.succeed(messages)
    }),
})

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
