/**
 * A server's transport compression, for the codec tests: one context for the whole stream,
 * each message flushed (zlib: Z_SYNC_FLUSH, so it ends in 00 00 ff ff; zstd: a flushed
 * block inside one never-ending frame), one frame per message.
 */
import * as zlib from "node:zlib"

export const compressedStream = async (
  kind: "zlib-stream" | "zstd-stream",
  messages: ReadonlyArray<string | Uint8Array>,
  zstdParams?: Record<number, number>,
): Promise<Array<Uint8Array>> => {
  const stream =
    kind === "zlib-stream"
      ? zlib.createDeflate()
      : zlib.createZstdCompress(zstdParams ? { params: zstdParams } : {})
  const flush = kind === "zlib-stream" ? zlib.constants.Z_SYNC_FLUSH : zlib.constants.ZSTD_e_flush
  let pending: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => pending.push(chunk))
  const frames: Array<Uint8Array> = []
  for (const message of messages) {
    stream.write(message)
    await new Promise<void>((resolve) => stream.flush(flush, () => resolve()))
    frames.push(new Uint8Array(Buffer.concat(pending)))
    pending = []
  }
  stream.destroy()
  return frames
}

/** What a decompression bomb would inflate: bytes in V8's heap plus bytes in ArrayBuffers. */
export const heldBytes = (): number => {
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

/** A JSON object of exactly `bytes` bytes (at least 8). */
export const objectOfBytes = (bytes: number): string => `{"d":"${"0".repeat(bytes - 8)}"}`
