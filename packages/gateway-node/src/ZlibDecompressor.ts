/**
 * `zlib-stream`: one inflate context for a connection's whole life, synchronous.
 *
 * Built on pako's inflate (a faithful JS port of zlib) driven by our own loop, so that the
 * output buffer is reused between messages (no allocation for a small event) and the size
 * limit is checked while inflating: a message is refused as soon as its output passes
 * `maxMessageBytes`, before more memory is spent on it. Measured against `node:zlib`'s
 * stream awaited per message, fflate and pako's own `Inflate`: see packages/bench/README.md.
 */

import type { DecompressorOptions, PushDecompressor } from "@vigil/gateway/Compression"
import { DecodeError } from "@vigil/gateway/GatewayError"
import { Result } from "effect"
import { Z_BUF_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END, ZStream, zlibInflate, zlibInflateInit2 } from "pako"

/** Output grows from this size; a buffer grown past `keepBytes` is dropped after its message. */
const initialBytes = 64 * 1024
const keepBytes = 1024 * 1024

const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * A fresh zlib-stream context. After a `DecodeError` the context is spent: every later push
 * fails too, since the stream cannot be resynchronised (the connection must be recycled).
 */
export const makeZlibDecompressor = (options: DecompressorOptions): PushDecompressor => {
  const limit = options.maxMessageBytes
  const strm = new ZStream()
  zlibInflateInit2(strm, 15)
  let out = new Uint8Array(initialBytes)
  /** Bytes of the current message inflated so far (all of them in `out[0, length)`). */
  let length = 0
  /** Compressed bytes received for the current message, for error reports. */
  let received = 0
  /** The last four compressed bytes seen, across frames: the `00 00 ff ff` check. */
  let tail = 0
  let failed: DecodeError | undefined

  const fail = (stage: "decompress" | "size", detail: string): Result.Result<never, DecodeError> => {
    failed = new DecodeError({ stage, detail, bytes: received })
    return Result.fail(failed)
  }

  const push = (chunk: Uint8Array): Result.Result<string | undefined, DecodeError> => {
    if (failed) return Result.fail(failed)
    received += chunk.length
    strm.input = chunk
    strm.next_in = 0
    strm.avail_in = chunk.length
    // inflate stops when it has used all input or filled the output: go on while it is full.
    for (;;) {
      if (length === out.length) {
        if (length > limit) return fail("size", `decompressed message exceeds ${limit} bytes`)
        const grown = new Uint8Array(Math.min(out.length * 2, limit + 1))
        grown.set(out)
        out = grown
      }
      strm.output = out
      strm.next_out = length
      strm.avail_out = out.length - length
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
    if (length > limit) return fail("size", `decompressed message exceeds ${limit} bytes`)
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
    length = 0
    received = 0
    tail = 0
    if (out.length > keepBytes) out = new Uint8Array(initialBytes)
    return Result.succeed(text)
  }

  return { push }
}
