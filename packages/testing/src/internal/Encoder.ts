/**
 * Transport compression on the server side: one compression context per connection, as
 * Discord keeps one for the socket's whole life. `zlib-stream` ends every message with a
 * Z_SYNC_FLUSH (so it ends in `00 00 ff ff`) and may be split across several frames;
 * `zstd-stream` flushes each message without ending the zstd frame, one message per frame.
 */
import * as Zlib from "node:zlib"
import { Effect, type Scope } from "effect"

export type TransportCompression = "zlib-stream" | "zstd-stream"

export interface Encoder {
  /**
   * The WebSocket frames that carry one gateway message, in order. With `repeat`, `text`
   * goes that many times before the one flush: what a bomb of many tiny messages looks like.
   */
  readonly encode: (text: string, repeat?: number) => Effect.Effect<ReadonlyArray<string | Buffer>>
}

export interface EncoderOptions {
  /** zlib-stream only: split each compressed message into frames of at most this many bytes. */
  readonly zlibFrameBytes?: number | undefined
}

const plain: Encoder = { encode: (text, repeat = 1) => Effect.succeed([text.repeat(repeat)]) }

/** Input chunks of about this size: a bomb of hundreds of MiB never exists whole in memory. */
const chunkBytes = 64 * 1024

/**
 * Compresses through a stream and collects what one flush produced, the way `ws` does its
 * own permessage-deflate: callers are serialized (the connection has a single writer), so
 * everything emitted before the flush callback belongs to this message.
 */
const streaming = (stream: Zlib.Deflate | Zlib.ZstdCompress, flushKind: number) => {
  const chunks: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => chunks.push(chunk))
  // A failing codec must not crash the process; the connection sees no frame instead.
  stream.on("error", () => {})
  return (text: string, repeat = 1): Effect.Effect<Buffer> =>
    Effect.callback<Buffer>((resume) => {
      const perChunk = Math.max(1, Math.min(repeat, Math.floor(chunkBytes / Math.max(1, text.length))))
      const chunk = Buffer.from(text.repeat(perChunk), "utf8")
      let left = repeat
      for (; left >= perChunk; left -= perChunk) stream.write(chunk)
      if (left > 0) stream.write(Buffer.from(text.repeat(left), "utf8"))
      stream.flush(flushKind, () => resume(Effect.succeed(Buffer.concat(chunks.splice(0)))))
    })
}

const split = (data: Buffer, size: number | undefined): ReadonlyArray<Buffer> => {
  if (size === undefined || size <= 0 || data.length <= size) return [data]
  const frames: Array<Buffer> = []
  for (let at = 0; at < data.length; at += size) frames.push(data.subarray(at, at + size))
  return frames
}

export const make = (
  compression: TransportCompression | undefined,
  options: EncoderOptions = {},
): Effect.Effect<Encoder, never, Scope.Scope> => {
  if (compression === undefined) return Effect.succeed(plain)
  return Effect.acquireRelease(
    Effect.sync(() => (compression === "zlib-stream" ? Zlib.createDeflate() : Zlib.createZstdCompress())),
    (stream) => Effect.sync(() => stream.destroy()),
  ).pipe(
    Effect.map((stream): Encoder => {
      if (compression === "zlib-stream") {
        const compress = streaming(stream, Zlib.constants.Z_SYNC_FLUSH)
        return {
          encode: (text, repeat) =>
            Effect.map(compress(text, repeat), (data) => split(data, options.zlibFrameBytes)),
        }
      }
      const compress = streaming(stream, Zlib.constants.ZSTD_e_flush)
      return { encode: (text, repeat) => Effect.map(compress(text, repeat), (data) => [data]) }
    }),
  )
}
