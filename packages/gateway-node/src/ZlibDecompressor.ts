/**
 * `zlib-stream`: one inflate context for a connection's whole life, synchronous.
 *
 * Built on pako's inflate (a faithful JS port of zlib) driven by our own loop, so that the
 * output buffer is reused between messages (no allocation for a small event) and the size
 * limits are checked while inflating: a message is refused as soon as its output passes
 * `maxMessageBytes`, or the batch's as soon as it passes `maxBatchBytes` (many frames, each
 * a bomb under the message limit), before more memory is spent on it. Measured against `node:zlib`'s
 * stream awaited per message, fflate and pako's own `Inflate`: see packages/bench/README.md.
 */

import { type Decompressor, type DecompressorOptions, maxBatchBytes } from "@vigil/gateway/Compression"
import { DecodeError } from "@vigil/gateway/GatewayError"
import { Effect, Result } from "effect"
import { Z_BUF_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END, ZStream, zlibInflate, zlibInflateInit2 } from "pako"

/** Output grows from this size; a buffer grown past `keepBytes` is dropped after its message. */
const initialBytes = 64 * 1024
const keepBytes = 1024 * 1024

const textDecoder = new TextDecoder("utf-8", { fatal: true })

export interface ZlibDecompressor extends Decompressor {
  /** Inflates one frame alone (no batch bound): the message it completes, or undefined. */
  readonly push: (chunk: Uint8Array) => Result.Result<string | undefined, DecodeError>
}

/**
 * A fresh zlib-stream context. After a `DecodeError` the context is spent: every later push
 * fails too, since the stream cannot be resynchronised (the connection must be recycled).
 */
export const makeZlibDecompressor = (options: DecompressorOptions): ZlibDecompressor => {
  const limit = options.maxMessageBytes
  const batchLimit = maxBatchBytes(options)
  const strm = new ZStream()
  zlibInflateInit2(strm, 15)
  let out = new Uint8Array(initialBytes)
  /** Bytes of the current message inflated so far (all of them in `out[0, length)`). */
  let length = 0
  /** Compressed bytes received for the current message, for error reports. */
  let received = 0
  /** The last four compressed bytes seen, across frames: the `00 00 ff ff` check. */
  let tail = 0
  /** The length of the message the last `inflate` completed. */
  let completed = 0
  let failed: DecodeError | undefined

  const fail = (stage: "decompress" | "size", detail: string): Result.Result<never, DecodeError> => {
    failed = new DecodeError({ stage, detail, bytes: received })
    return Result.fail(failed)
  }

  /** Inflates one frame, refusing a message longer than `cap` (at most `limit`). */
  const inflate = (chunk: Uint8Array, cap: number): Result.Result<string | undefined, DecodeError> => {
    if (failed) return Result.fail(failed)
    const tooLarge = () =>
      fail(
        "size",
        cap < limit
          ? `decompressed output of one read exceeds ${batchLimit} bytes`
          : `decompressed message exceeds ${limit} bytes`,
      )
    received += chunk.length
    strm.input = chunk
    strm.next_in = 0
    strm.avail_in = chunk.length
    // inflate stops when it has used all input or filled the output: go on while it is full.
    // The output ends at `cap + 1` bytes: one byte past the cap tells that it was crossed.
    for (;;) {
      let end = Math.min(out.length, cap + 1)
      if (length >= end) {
        if (length > cap) return tooLarge()
        const grown = new Uint8Array(Math.min(out.length * 2, cap + 1))
        grown.set(out.subarray(0, length))
        out = grown
        end = out.length
      }
      strm.output = out
      strm.next_out = length
      strm.avail_out = end - length
      const status = zlibInflate(strm, Z_NO_FLUSH)
      length = strm.next_out
      if (status === Z_STREAM_END) {
        // The server ended the deflate stream; nothing may follow on this context.
        if (strm.avail_in > 0) return fail("decompress", "data after the end of the zlib stream")
        break
      }
      if (status !== Z_OK && status !== Z_BUF_ERROR) {
        return fail("decompress", `corrupt zlib-stream data (${strm.msg || `status ${status}`})`)
      }
      if (strm.avail_out > 0) break
    }
    if (length > cap) return tooLarge()
    // Keep the last four compressed bytes (a suffix may straddle two frames).
    for (let i = Math.max(0, chunk.length - 4); i < chunk.length; i++)
      tail = ((tail << 8) | (chunk[i] as number)) >>> 0
    if (tail !== 0x0000ffff) return Result.succeed(undefined)
    let text: string
    try {
      text = textDecoder.decode(out.subarray(0, length))
    } catch {
      return fail("decompress", "decompressed message is not UTF-8")
    }
    completed = length
    length = 0
    received = 0
    tail = 0
    if (out.length > keepBytes) out = new Uint8Array(initialBytes)
    return Result.succeed(text)
  }

  const decompress = (frames: ReadonlyArray<Uint8Array>): Effect.Effect<ReadonlyArray<string>, DecodeError> =>
    Effect.suspend(() => {
      const messages: Array<string> = []
      /** What the batch may still decompress: earlier messages of the batch count against it. */
      let room = batchLimit
      for (const frame of frames) {
        const out = inflate(frame, Math.min(limit, room))
        if (Result.isFailure(out)) return Effect.fail(out.failure)
        if (out.success === undefined) continue
        messages.push(out.success)
        room -= completed
      }
      return Effect.succeed(messages)
    })

  return { decompress, push: (chunk) => inflate(chunk, limit) }
}
