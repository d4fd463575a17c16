/**
 * `zstd-stream`: one zstd frame spanning the connection, each WebSocket message one flushed
 * gateway message; synchronous.
 *
 * Decoding is fzstd's streaming decoder. In front of it, our own walk over the frame and
 * block headers (3 bytes each, no decoding) does what fzstd cannot be asked to:
 * - checks the framing: a message must hold whole blocks (a flushed message always does),
 *   the frame must start with the zstd magic, use no dictionary, and a window no larger
 *   than `maxWindowBytes` (fzstd would allocate whatever a corrupt header claims);
 * - enforces the size limit while decoding: a block's output is bounded (raw and RLE by
 *   their size, compressed by 128 KiB), so when a message nears the limit its blocks are
 *   fed one at a time and decoding stops once the output passes the limit, at most one
 *   block (128 KiB) beyond it;
 * - drops fzstd's leftover list after each message: fzstd 0.1.1 appends an empty view of
 *   each chunk to it when the chunk ends on a block boundary, and never clears it while
 *   nothing is left over, so a long-lived stream would keep every frame's buffer alive.
 *   That touches fzstd's internals, so fzstd is pinned to 0.1.1 and a test watches it.
 *
 * Cost: fzstd shifts its whole window (2 MiB at zstd's default level) after every block,
 * which dominates a small event's decode; see packages/bench/README.md.
 */

import type { DecompressorOptions, PushDecompressor } from "@vigil/gateway/Compression"
import { DecodeError } from "@vigil/gateway/GatewayError"
import { Result } from "effect"
import { Decompress } from "fzstd"

/** The largest window a frame may ask for (zstd's own decoder accepts up to 128 MiB). */
export const maxWindowBytes = 32 * 1024 * 1024

const blockMaxBytes = 128 * 1024
/** fzstd waits for this many bytes before reading a frame header. */
const fzstdHeaderMinBytes = 18

const textDecoder = new TextDecoder("utf-8", { fatal: true })

/** fzstd 0.1.1's streaming state we rely on: pending chunks and their total length. */
interface FzstdInternals {
  c: Array<Uint8Array>
  l: number
}

type Expect = "header" | "block" | "checksum"

export const makeZstdDecompressor = (options: DecompressorOptions): PushDecompressor => {
  const limit = options.maxMessageBytes
  let parts: Array<Uint8Array> = []
  let produced = 0
  const inner = new Decompress((data) => {
    parts.push(data)
    produced += data.length
  })
  const internals = inner as unknown as FzstdInternals

  let expect: Expect = "header"
  let checksum = false
  /** The largest output of one block in the current frame. */
  let blockMax = blockMaxBytes
  let failed: DecodeError | undefined
  let chunkBytes = 0

  const fail = (stage: "decompress" | "size", detail: string): Result.Result<never, DecodeError> => {
    parts = []
    failed = new DecodeError({ stage, detail, bytes: chunkBytes })
    return Result.fail(failed)
  }

  /** Feeds `chunk[from, to)`, which ends on a block boundary, to fzstd. */
  const feed = (chunk: Uint8Array, from: number, to: number): string | undefined => {
    try {
      inner.push(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to))
    } catch {
      return "corrupt zstd-stream data"
    }
    if (internals.l !== 0) return "zstd-stream message does not end on a block boundary"
    internals.c = []
    return undefined
  }

  /** Reads a frame header at `at`; returns its length or an error. */
  const readHeader = (chunk: Uint8Array, at: number): number | string => {
    if (chunk.length - at < 6) return "truncated zstd frame header"
    const magic =
      ((chunk[at] as number) | ((chunk[at + 1] as number) << 8) | ((chunk[at + 2] as number) << 16)) +
      (chunk[at + 3] as number) * 2 ** 24
    if (magic !== 0xfd2fb528) return "zstd-stream data does not start with a zstd frame"
    const fhd = chunk[at + 4] as number
    if (fhd & 8) return "zstd frame header has its reserved bit set"
    const singleSegment = (fhd >> 5) & 1
    const fcsFlag = fhd >> 6
    const dictBytes = [0, 1, 2, 4][fhd & 3] as number
    const fcsBytes = fcsFlag === 0 ? singleSegment : 1 << fcsFlag
    const length = 5 + (singleSegment ? 0 : 1) + dictBytes + fcsBytes
    if (chunk.length - at < length) return "truncated zstd frame header"
    let dictionary = 0
    for (let i = 0; i < dictBytes; i++)
      dictionary |= (chunk[at + 5 + (singleSegment ? 0 : 1) + i] as number) << (8 * i)
    if (dictionary !== 0) return "zstd frame needs a dictionary"
    let window: number
    if (singleSegment) {
      let size = 0
      const start = at + 5 + dictBytes
      for (let i = fcsBytes - 1; i >= 0; i--) size = size * 256 + (chunk[start + i] as number)
      window = fcsBytes === 2 ? size + 256 : size
    } else {
      const descriptor = chunk[at + 5] as number
      const base = 2 ** (10 + (descriptor >> 3))
      window = base + (base / 8) * (descriptor & 7)
    }
    if (window > maxWindowBytes) return `zstd window of ${window} bytes exceeds ${maxWindowBytes}`
    checksum = ((fhd >> 2) & 1) === 1
    blockMax = Math.min(blockMaxBytes, Math.max(window, 1))
    return length
  }

  const push = (chunk: Uint8Array): Result.Result<string | undefined, DecodeError> => {
    if (failed) return Result.fail(failed)
    chunkBytes = chunk.length
    parts = []
    produced = 0
    let at = 0
    let segment = 0
    let bound = 0
    while (at < chunk.length) {
      if (expect === "header") {
        if (at > 0 && at - segment > 0) {
          const error = feed(chunk, segment, at)
          if (error) return fail("decompress", error)
          segment = at
          bound = 0
        }
        const length = readHeader(chunk, at)
        if (typeof length === "string") return fail("decompress", length)
        // fzstd reads a frame header only once it holds 18 bytes; a frame's first message
        // is a Hello at least (far longer), so a shorter one is refused rather than delayed.
        if (chunk.length - at < fzstdHeaderMinBytes) return fail("decompress", "zstd frame start too short")
        at += length
        expect = "block"
        continue
      }
      if (expect === "checksum") {
        if (chunk.length - at < 4) return fail("decompress", "truncated zstd frame checksum")
        at += 4
        expect = "header"
        continue
      }
      if (chunk.length - at < 3) return fail("decompress", "truncated zstd block header")
      const header =
        (chunk[at] as number) | ((chunk[at + 1] as number) << 8) | ((chunk[at + 2] as number) << 16)
      const type = (header >> 1) & 3
      const size = header >>> 3
      if (type === 3) return fail("decompress", "reserved zstd block type")
      if (size > blockMax) return fail("decompress", "zstd block larger than its frame allows")
      const content = type === 1 ? 1 : size
      const output = type === 2 ? blockMax : size
      if (chunk.length - at - 3 < content) return fail("decompress", "truncated zstd block")
      // Near the limit, decode what is queued before taking this block on.
      if (bound > 0 && produced + bound + output > limit) {
        const error = feed(chunk, segment, at)
        if (error) return fail("decompress", error)
        if (produced > limit) return fail("size", `decompressed message exceeds ${limit} bytes`)
        segment = at
        bound = 0
      }
      at += 3 + content
      bound += output
      if (header & 1) expect = checksum ? "checksum" : "header"
    }
    if (at > segment) {
      const error = feed(chunk, segment, at)
      if (error) return fail("decompress", error)
    }
    if (produced > limit) return fail("size", `decompressed message exceeds ${limit} bytes`)
    if (produced === 0) return fail("decompress", "zstd-stream message carried no data")
    let text: string
    try {
      text = textDecoder.decode(parts.length === 1 ? (parts[0] as Uint8Array) : concat(parts, produced))
    } catch {
      return fail("decompress", "decompressed message is not UTF-8")
    }
    parts = []
    return Result.succeed(text)
  }

  return { push }
}

const concat = (parts: ReadonlyArray<Uint8Array>, length: number): Uint8Array => {
  const out = new Uint8Array(length)
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}
