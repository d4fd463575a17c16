/**
 * `zstd-stream` on `node:zlib`'s zstd decoder: one native decompression context for the
 * connection's whole life (one zstd frame spans every message, each message flushed), and
 * one asynchronous round trip per *read batch*, not per message.
 *
 * A batch's frames are written to the context as one buffer; the output is split back into
 * gateway messages by a small scanner (each gateway message is exactly one JSON object: it
 * tracks bracket depth, aware of strings and escapes). The scanner runs as output arrives,
 * so it also enforces the limits while decoding: a message whose output passes
 * `maxMessageBytes`, a batch whose output passes `maxBatchBytes`, or a batch yielding more
 * messages than it has frames (a bomb of many tiny objects) fails the batch and destroys the
 * context at once, holding at most a limit plus one output chunk. Writing the frames one by one instead (message boundaries
 * from each write's callback) costs one threadpool hop per frame, which is what makes the
 * per-message `await` expensive; see `packages/bench/src/codecs.ts`.
 *
 * Framing checks: zstd-stream carries exactly one message per WebSocket message, so a batch
 * of N frames must decode to exactly N whole JSON objects; a batch ending inside a message
 * (truncated) or holding more (as soon as the N+1st ends) or fewer messages (mis-framed) is
 * a `DecodeError`. Data that is
 * not zstd, corrupt blocks and frames asking for a window above `maxWindowLog` are refused
 * by zstd itself (the code of its error is reported, never any payload). After a
 * `DecodeError` the context is spent: it cannot be resynchronised, the connection recycles.
 */
import * as zlib from "node:zlib"
import { type Decompressor, type DecompressorOptions, maxBatchBytes } from "@vigil/gateway/Compression"
import { DecodeError } from "@vigil/gateway/GatewayError"
import { Effect, type Scope } from "effect"

/** The largest window a frame may ask for, as a power of two: 32 MiB (zstd allows 128 MiB). */
export const maxWindowLog = 25

/**
 * Output chunk size of the native stream. Each full chunk costs one more threadpool hop; over
 * four noisy runs of the bench workload 64 KiB came out ~7% cheaper than node's 16 KiB
 * default, for 48 KiB more per connection (next to the ~2 MiB zstd window it holds anyway).
 */
export const defaultChunkBytes = 64 * 1024

export interface ZstdStreamOptions extends DecompressorOptions {
  readonly chunkBytes?: number
}

/** A context not tied to a scope: `close` is the caller's job (`make` does it for you). */
export interface ZstdStream extends Decompressor {
  /** Destroys the native stream; later batches fail. Idempotent. */
  readonly close: () => void
  /** Whether the native stream is destroyed (after `close` or a `DecodeError`). */
  readonly closed: () => boolean
}

const textDecoder = new TextDecoder("utf-8", { fatal: true })

const quote = 0x22
const backslash = 0x5c
const openBrace = 0x7b
const closeBrace = 0x7d
const openBracket = 0x5b
const closeBracket = 0x5d

type Resume = (effect: Effect.Effect<ReadonlyArray<string>, DecodeError>) => void

export const makeUnscoped = (options: ZstdStreamOptions): ZstdStream => {
  const limit = options.maxMessageBytes
  const batchLimit = maxBatchBytes(options)
  const stream = zlib.createZstdDecompress({
    chunkSize: options.chunkBytes ?? defaultChunkBytes,
    params: { [zlib.constants.ZSTD_d_windowLogMax]: maxWindowLog },
  })

  // Scanner state, carried across output chunks and batches.
  let depth = 0
  let inString = false
  let escaped = false
  /** The current message's bytes from earlier output chunks. */
  let parts: Array<Uint8Array> = []
  let partBytes = 0

  // The batch in flight.
  let resume: Resume | undefined
  let messages: Array<string> = []
  let expected = 0
  let batchBytes = 0
  /** Decompressed bytes of the batch so far (a batch starts and ends between messages). */
  let batchOutput = 0

  let failed: DecodeError | undefined

  const fail = (stage: "decompress" | "size", detail: string): void => {
    if (!failed) failed = new DecodeError({ stage, detail, bytes: batchBytes })
    parts = []
    messages = []
    stream.destroy()
    const settle = resume
    resume = undefined
    settle?.(Effect.fail(failed))
  }

  /** One message's bytes, `chunk[start, end)` after the parts: decoded, or a failure. */
  const complete = (chunk: Uint8Array, start: number, end: number): boolean => {
    let bytes: Uint8Array
    if (parts.length === 0) bytes = chunk.subarray(start, end)
    else {
      parts.push(chunk.subarray(0, end))
      bytes = Buffer.concat(parts, partBytes + end)
      parts = []
      partBytes = 0
    }
    if (bytes.length > limit) {
      fail("size", `decompressed message exceeds ${limit} bytes`)
      return false
    }
    if (messages.length === expected) {
      fail("decompress", `${expected} zstd-stream frames carried more messages (mis-framed)`)
      return false
    }
    try {
      messages.push(textDecoder.decode(bytes))
    } catch {
      fail("decompress", "decompressed message is not UTF-8")
      return false
    }
    return true
  }

  const onData = (chunk: Buffer): void => {
    if (failed) return
    const n = chunk.length
    batchOutput += n
    if (batchOutput > batchLimit) {
      fail("size", `decompressed output of one read exceeds ${batchLimit} bytes`)
      return
    }
    /** Where the current message starts in this chunk (0 when it began in an earlier one). */
    let start = 0
    let i = 0
    while (i < n) {
      if (inString) {
        // A string's body, most of a gateway message: only its end and escapes matter.
        if (escaped) {
          escaped = false
          i++
        }
        while (i < n) {
          const c = chunk[i++] as number
          if (c === quote) {
            inString = false
            break
          }
          if (c === backslash) {
            if (i < n) i++
            else escaped = true
          }
        }
        continue
      }
      const c = chunk[i++] as number
      if (depth === 0) {
        if (c !== openBrace) {
          fail("decompress", "zstd-stream message is not a JSON object")
          return
        }
        depth = 1
        start = i - 1
      } else if (c === quote) inString = true
      else if (c === openBrace || c === openBracket) depth++
      else if ((c === closeBrace || c === closeBracket) && --depth === 0) {
        if (!complete(chunk, start, i)) return
        start = i
      }
    }
    if (depth > 0) {
      partBytes += n - start
      if (partBytes > limit) {
        fail("size", `decompressed message exceeds ${limit} bytes`)
        return
      }
      parts.push(start === 0 ? chunk : chunk.subarray(start))
    }
  }

  const onWritten = (): void => {
    if (failed || !resume) return
    // Everything decoded from the batch has been pushed (and scanned) by now.
    if (depth > 0) fail("decompress", "zstd-stream frame ends inside a message (truncated or mis-framed)")
    else if (messages.length !== expected)
      fail("decompress", `${expected} zstd-stream frames carried ${messages.length} messages (mis-framed)`)
    if (failed) return
    const out = messages
    messages = []
    const settle = resume
    resume = undefined
    settle(Effect.succeed(out))
  }

  stream.on("data", onData)
  stream.on("error", (error: NodeJS.ErrnoException) => {
    const code = typeof error.code === "string" && /^[A-Za-z_]+$/.test(error.code) ? error.code : "unknown"
    fail("decompress", `corrupt zstd-stream data (${code})`)
  })

  const decompress = (frames: ReadonlyArray<Uint8Array>): Effect.Effect<ReadonlyArray<string>, DecodeError> =>
    Effect.suspend(() => {
      if (failed) return Effect.fail(failed)
      if (stream.destroyed)
        return Effect.fail(
          new DecodeError({ stage: "decompress", detail: "zstd-stream context closed", bytes: 0 }),
        )
      if (resume) return Effect.die(new Error("ZstdStream: a batch is already in flight on this context"))
      if (frames.length === 0) return Effect.succeed([])
      return Effect.callback<ReadonlyArray<string>, DecodeError>((settle) => {
        resume = settle
        expected = frames.length
        batchBytes = 0
        batchOutput = 0
        for (const frame of frames) batchBytes += frame.length
        const input = frames.length === 1 ? (frames[0] as Uint8Array) : Buffer.concat(frames, batchBytes)
        stream.write(input, onWritten)
        // Interrupted mid-batch: the context's state is unknown, so it is spent.
        return Effect.sync(() => {
          if (resume !== settle) return
          resume = undefined
          fail("decompress", "zstd-stream batch interrupted")
        })
      })
    })

  const close = () => {
    resume = undefined
    stream.destroy()
  }

  return { decompress, close, closed: () => stream.destroyed }
}

/** A fresh context for one connection, destroyed when the scope closes. */
export const make = (options: ZstdStreamOptions): Effect.Effect<ZstdStream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => makeUnscoped(options)),
    (context) => Effect.sync(context.close),
  )
