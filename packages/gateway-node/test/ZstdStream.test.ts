/**
 * zstd-stream on node:zlib's decoder, batch at a time, against node:zlib's zstd compressor
 * (one frame for the stream, flushed per message): round trips over thousands of messages
 * in batches of varied size, JSON the scanner could trip on, large messages, mis-framed,
 * corrupt and truncated data, the size limits with bombs (one huge message, one frame of
 * millions of tiny objects, a batch of many large messages), isolation between contexts,
 * cleanup when the scope closes and interruption mid-batch.
 */
import * as zlib from "node:zlib"
import { assert, describe, it } from "@effect/vitest"
import { GatewayCompression } from "@vigil/gateway/Compression"
import * as NodeCompression from "@vigil/gateway-node/NodeCompression"
import * as ZstdStream from "@vigil/gateway-node/ZstdStream"
import { Effect, Exit, Fiber } from "effect"
import { compressedStream, heldBytes, objectOfBytes } from "./compressed.ts"

const limit = 32 * 1024 * 1024

/** A server-side zstd-stream: one frame, each message flushed (ZSTD_e_flush), never ended. */
const frameStream = (messages: ReadonlyArray<string | Uint8Array>, params?: Record<number, number>) =>
  Effect.promise(() => compressedStream("zstd-stream", messages, params))

/** Strings that a naive brace counter would get wrong: braces, quotes and escapes in them. */
const tricky = [
  "}",
  "{",
  "]]]",
  '\\"}',
  "\\\\",
  '\\\\"',
  "a\\",
  "é✓ 😀 \u0000 \u2028",
  '{"nested":"json"}',
  "\\u007d",
]

const message = (i: number, pad = 0) =>
  JSON.stringify({
    op: 0,
    s: i,
    t: "MESSAGE_CREATE",
    d: {
      id: String(i),
      content: `hello ${i} ${tricky[i % tricky.length]} ${"é✓".repeat(i % 7)}${"x".repeat(pad)}`,
      embeds: i % 3 === 0 ? [{ fields: [[], {}, [{ a: [1, "]"] }]] }] : [],
      nonce: null,
    },
  })

const bulky = (bytes: number, seed = 1) => {
  let s = seed
  const chars: Array<string> = []
  for (let i = 0; i < bytes; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff
    chars.push(String.fromCharCode(97 + (s % 26)))
  }
  return JSON.stringify({ op: 0, s: 1, t: "GUILD_CREATE", d: { blob: chars.join("") } })
}

/** Splits `frames` into batches of the given sizes, cycling through them. */
const batches = (frames: ReadonlyArray<Uint8Array>, sizes: ReadonlyArray<number>) => {
  const out: Array<ReadonlyArray<Uint8Array>> = []
  for (let at = 0, k = 0; at < frames.length; k++) {
    const size = sizes[k % sizes.length] as number
    out.push(frames.slice(at, at + size))
    at += size
  }
  return out
}

const decodeAll = (context: ZstdStream.ZstdStream, frames: ReadonlyArray<Uint8Array>, sizes: Array<number>) =>
  Effect.gen(function* () {
    const out: Array<string> = []
    for (const batch of batches(frames, sizes)) out.push(...(yield* context.decompress(batch)))
    return out
  })

describe("ZstdStream", () => {
  it.effect("round-trips thousands of messages in batches of varied size, one frame spanning them", () =>
    Effect.gen(function* () {
      const texts = Array.from({ length: 4000 }, (_, i) => message(i, i % 50 === 0 ? 2000 : 0))
      for (const text of texts) JSON.parse(text)
      const frames = yield* frameStream(texts)
      // The frame magic appears once, at the start: one frame spans every message.
      assert.deepStrictEqual(Array.from((frames[0] as Uint8Array).subarray(0, 4)), [0x28, 0xb5, 0x2f, 0xfd])
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      const out = yield* decodeAll(context, frames, [1, 7, 128, 2, 1, 300, 16, 33, 1, 1, 64])
      assert.strictEqual(out.length, texts.length)
      for (const [i, text] of texts.entries()) if (out[i] !== text) assert.fail(`message ${i} differs`)
    }),
  )

  it.effect("follows strings, escapes and multi-byte characters across output chunk boundaries", () =>
    Effect.gen(function* () {
      // 64-byte output chunks (node:zlib's minimum): every boundary position gets hit.
      const texts = Array.from({ length: 600 }, (_, i) =>
        JSON.stringify({
          i,
          s: `${"\\".repeat(i % 5)}"${tricky[i % tricky.length]}${"é😀".repeat(i % 4)}`,
          a: [i],
        }),
      )
      const frames = yield* frameStream(texts)
      const context = yield* ZstdStream.make({ maxMessageBytes: limit, chunkBytes: 64 })
      assert.deepStrictEqual(yield* decodeAll(context, frames, [1, 5, 40]), texts)
    }),
  )

  it.effect("decodes large messages (many blocks, many output chunks) alone and inside batches", () =>
    Effect.gen(function* () {
      const texts = [
        message(1),
        bulky(3_000_000, 7),
        message(2),
        JSON.stringify({ d: "x".repeat(1_000_000) }),
        message(3),
        bulky(200_000, 3),
        message(4),
      ]
      const frames = yield* frameStream(texts)
      for (const sizes of [[1], [2, 5], [7]]) {
        const context = yield* ZstdStream.make({ maxMessageBytes: limit, chunkBytes: 16 * 1024 })
        assert.deepStrictEqual(yield* decodeAll(context, frames, sizes), texts)
      }
    }),
  )

  it.effect("follows a stream whose frames carry checksums", () =>
    Effect.gen(function* () {
      const texts = Array.from({ length: 200 }, (_, i) => message(i))
      const frames = yield* frameStream(texts, { [zlib.constants.ZSTD_c_checksumFlag]: 1 })
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      assert.deepStrictEqual(yield* decodeAll(context, frames, [3, 50]), texts)
    }),
  )

  it.effect("an empty batch decodes to nothing", () =>
    Effect.gen(function* () {
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      assert.deepStrictEqual(yield* context.decompress([]), [])
    }),
  )

  it.effect("refuses data without the zstd magic (mis-framed), typed and without content", () =>
    Effect.gen(function* () {
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      const error = yield* Effect.flip(
        context.decompress([new TextEncoder().encode('{"op":10,"d":{"secret":"token-like"}}')]),
      )
      assert.strictEqual(error.stage, "decompress")
      assert.notInclude(error.detail, "token-like")
      assert.notInclude(error.message, "token-like")
      // spent, and the native stream is gone
      assert.isTrue(context.closed())
      assert.strictEqual((yield* Effect.flip(context.decompress([new Uint8Array(8)]))).stage, "decompress")
    }),
  )

  it.effect("refuses zlib data sent on a zstd-stream", () =>
    Effect.gen(function* () {
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      const deflated = zlib.deflateSync(message(1), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
      assert.strictEqual((yield* Effect.flip(context.decompress([deflated]))).stage, "decompress")
    }),
  )

  it.effect("refuses a second frame header where blocks are expected, and is spent after", () =>
    Effect.gen(function* () {
      const frames = yield* frameStream([message(1), message(2)])
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      assert.deepStrictEqual(yield* context.decompress([frames[0] as Uint8Array]), [message(1)])
      assert.strictEqual(
        (yield* Effect.flip(context.decompress([frames[0] as Uint8Array]))).stage,
        "decompress",
      )
      assert.strictEqual(
        (yield* Effect.flip(context.decompress([frames[1] as Uint8Array]))).stage,
        "decompress",
      )
    }),
  )

  it.effect("refuses a frame carrying two messages, or a message split over two frames", () =>
    Effect.gen(function* () {
      const texts = [message(1), message(2), message(3), message(4)]
      const frames = yield* frameStream(texts)
      const [f1, f2, f3, f4] = frames as [Uint8Array, Uint8Array, Uint8Array, Uint8Array]
      const two = yield* ZstdStream.make({ maxMessageBytes: limit })
      assert.deepStrictEqual(yield* two.decompress([f1]), texts.slice(0, 1))
      const error = yield* Effect.flip(two.decompress([Buffer.concat([f2, f3]), f4]))
      assert.strictEqual(error.stage, "decompress")
      assert.include(error.detail, "2 zstd-stream frames carried more messages")

      // The server flushed in the middle of a message: the first frame ends inside it.
      const halves = yield* frameStream(['{"op":0,"d":{"content":"a', 'b"}}'])
      const split = yield* ZstdStream.make({ maxMessageBytes: limit })
      const splitError = yield* Effect.flip(split.decompress(halves))
      assert.strictEqual(splitError.stage, "decompress")
      const first = yield* ZstdStream.make({ maxMessageBytes: limit })
      const firstError = yield* Effect.flip(first.decompress(halves.slice(0, 1)))
      assert.include(firstError.detail, "ends inside a message")
    }),
  )

  it.effect("refuses an empty frame", () =>
    Effect.gen(function* () {
      const frames = yield* frameStream([message(1)])
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      const error = yield* Effect.flip(context.decompress([frames[0] as Uint8Array, new Uint8Array(0)]))
      assert.strictEqual(error.stage, "decompress")
    }),
  )

  it.effect("refuses a truncated message, whether the batch ends there or goes on", () =>
    Effect.gen(function* () {
      const texts = [message(1), bulky(20_000), message(3)]
      const frames = yield* frameStream(texts)
      const second = frames[1] as Uint8Array
      for (const rest of [[], [frames[2] as Uint8Array]]) {
        const context = yield* ZstdStream.make({ maxMessageBytes: limit })
        assert.deepStrictEqual(yield* context.decompress([frames[0] as Uint8Array]), texts.slice(0, 1))
        const error = yield* Effect.flip(
          context.decompress([second.subarray(0, second.length - 10), ...rest]),
        )
        assert.strictEqual(error.stage, "decompress")
      }
    }),
  )

  it.effect("refuses corrupt block contents", () =>
    Effect.gen(function* () {
      const texts = Array.from({ length: 10 }, (_, i) => message(i, 3000))
      const frames = yield* frameStream(texts)
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      assert.deepStrictEqual(yield* context.decompress(frames.slice(0, 5)), texts.slice(0, 5))
      const corrupt = new Uint8Array(frames[5] as Uint8Array)
      for (let i = 3; i < corrupt.length; i++) corrupt[i] = (corrupt[i] as number) ^ 0x5a
      const error = yield* Effect.flip(context.decompress([corrupt, ...frames.slice(6)]))
      assert.strictEqual(error.stage, "decompress")
    }),
  )

  it.effect("refuses a decompressed message that is not UTF-8", () =>
    Effect.gen(function* () {
      const bytes = Buffer.concat([Buffer.from('{"d":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')])
      const frames = yield* frameStream([message(1), bytes])
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      const error = yield* Effect.flip(context.decompress(frames))
      assert.strictEqual(error.stage, "decompress")
      assert.include(error.detail, "UTF-8")
    }),
  )

  it.effect("refuses a frame whose window is larger than allowed, before allocating it", () =>
    Effect.gen(function* () {
      // Magic, FHD 0 (window descriptor follows), descriptor for a 2 GiB window, then filler.
      const header = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, ...new Array(20).fill(0)])
      const context = yield* ZstdStream.make({ maxMessageBytes: limit })
      const error = yield* Effect.flip(context.decompress([header]))
      assert.strictEqual(error.stage, "decompress")
      assert.include(error.detail, "window")
    }),
  )

  it.effect("accepts a message of exactly maxMessageBytes and refuses one byte more", () =>
    Effect.gen(function* () {
      const text = bulky(100_000)
      const frames = yield* frameStream([text])
      const bytes = Buffer.byteLength(text)
      const exact = yield* ZstdStream.make({ maxMessageBytes: bytes, chunkBytes: 16 * 1024 })
      assert.deepStrictEqual(yield* exact.decompress(frames), [text])
      const under = yield* ZstdStream.make({ maxMessageBytes: bytes - 1, chunkBytes: 16 * 1024 })
      assert.strictEqual((yield* Effect.flip(under.decompress(frames))).stage, "size")
    }),
  )

  it.effect("refuses a bomb above maxMessageBytes while decoding, without inflating it", () =>
    Effect.gen(function* () {
      const bomb = JSON.stringify({ op: 0, d: { x: "0".repeat(64 * 1024 * 1024) } })
      const frames = yield* frameStream([message(1), bomb, message(2)])
      assert.isBelow((frames[1] as Uint8Array).length, 64 * 1024)
      const context = yield* ZstdStream.make({ maxMessageBytes: 1024 * 1024 })
      assert.deepStrictEqual(yield* context.decompress([frames[0] as Uint8Array]), [message(1)])
      const before = process.memoryUsage().arrayBuffers
      const cpu = process.cpuUsage()
      const error = yield* Effect.flip(context.decompress([frames[1] as Uint8Array, frames[2] as Uint8Array]))
      const spent = process.cpuUsage(cpu)
      assert.strictEqual(error.stage, "size")
      assert.isBelow(process.memoryUsage().arrayBuffers - before, 16 * 1024 * 1024)
      // Stopped near the limit: inflating 64 MiB would take far longer than this.
      assert.isBelow((spent.user + spent.system) / 1000, 100)
      assert.isTrue(context.closed())
      assert.strictEqual((yield* Effect.flip(context.decompress([frames[2] as Uint8Array]))).stage, "size")
    }),
  )

  it.effect("refuses a bomb that is not JSON at its first byte", () =>
    Effect.gen(function* () {
      const frames = yield* frameStream(["0".repeat(64 * 1024 * 1024)])
      const context = yield* ZstdStream.make({ maxMessageBytes: 1024 * 1024 })
      const error = yield* Effect.flip(context.decompress(frames))
      assert.strictEqual(error.stage, "decompress")
      assert.include(error.detail, "not a JSON object")
    }),
  )

  it.effect("refuses a frame of millions of tiny objects at the first extra one, the heap barely grown", () =>
    Effect.gen(function* () {
      // 16 MiB of `{}`: 8 Mi messages in one frame of a few hundred bytes.
      const bomb = Buffer.alloc(16 * 1024 * 1024, "{}")
      const frames = yield* frameStream([message(1), bomb, message(2), bomb])
      assert.isBelow((frames[1] as Uint8Array).length, 4096)
      for (const batch of [[frames[1]], [frames[1], frames[2]]] as Array<Array<Uint8Array>>) {
        const context = yield* ZstdStream.make({ maxMessageBytes: limit })
        assert.deepStrictEqual(yield* context.decompress([frames[0] as Uint8Array]), [message(1)])
        const before = heldBytes()
        const error = yield* Effect.flip(context.decompress(batch))
        assert.isBelow(heldBytes() - before, 64 * 1024 * 1024)
        assert.strictEqual(error.stage, "decompress")
        assert.include(error.detail, `${batch.length} zstd-stream frames carried more messages`)
        assert.isTrue(context.closed())
      }
    }),
  )

  it.effect("bounds a batch's output: 2 × maxMessageBytes by default, maxBatchBytes when given", () =>
    Effect.gen(function* () {
      const mib = 1024 * 1024
      const texts = Array.from({ length: 32 }, () => objectOfBytes(mib))
      const frames = yield* frameStream(texts)
      assert.isBelow(
        frames.reduce((n, f) => n + f.length, 0),
        mib,
      )
      // Two messages of the limit fit the default; a third, anywhere in the batch, does not.
      const two = yield* ZstdStream.make({ maxMessageBytes: mib })
      assert.deepStrictEqual(yield* two.decompress(frames.slice(0, 2)), texts.slice(0, 2))
      const before = heldBytes()
      const error = yield* Effect.flip(two.decompress(frames.slice(2)))
      assert.isBelow(heldBytes() - before, 16 * mib)
      assert.strictEqual(error.stage, "size")
      assert.include(error.detail, `one read exceeds ${2 * mib} bytes`)
      assert.isTrue(two.closed())
      const wider = yield* ZstdStream.make({ maxMessageBytes: mib, maxBatchBytes: 4 * mib })
      assert.deepStrictEqual(yield* wider.decompress(frames.slice(0, 4)), texts.slice(0, 4))
      assert.strictEqual((yield* Effect.flip(wider.decompress(frames.slice(4, 9)))).stage, "size")
    }),
  )

  it.effect("a DecodeError on one connection's context leaves another's untouched (layer)", () =>
    Effect.gen(function* () {
      const texts = Array.from({ length: 400 }, (_, i) => message(i))
      const frames = yield* frameStream(texts)
      const codecs = yield* GatewayCompression
      const a = yield* codecs.make("zstd-stream", { maxMessageBytes: limit })
      const b = yield* codecs.make("zstd-stream", { maxMessageBytes: limit })
      // Both decode concurrently, each on its own native context.
      const [outA, outB] = yield* Effect.all(
        [a.decompress(frames.slice(0, 200)), b.decompress(frames.slice(0, 200))],
        {
          concurrency: 2,
        },
      )
      assert.deepStrictEqual(outA, texts.slice(0, 200))
      assert.deepStrictEqual(outB, texts.slice(0, 200))
      const error = yield* Effect.flip(a.decompress([new Uint8Array([1, 2, 3, 4, 5])]))
      assert.strictEqual(error.stage, "decompress")
      assert.deepStrictEqual(yield* b.decompress(frames.slice(200)), texts.slice(200))
    }).pipe(Effect.provide(NodeCompression.layer)),
  )

  it.effect("destroys the native stream when the connection's scope closes", () =>
    Effect.gen(function* () {
      const frames = yield* frameStream([message(1), message(2)])
      const context = yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* ZstdStream.make({ maxMessageBytes: limit })
          assert.deepStrictEqual(yield* context.decompress([frames[0] as Uint8Array]), [message(1)])
          assert.isFalse(context.closed())
          return context
        }),
      )
      assert.isTrue(context.closed())
      assert.strictEqual(
        (yield* Effect.flip(context.decompress([frames[1] as Uint8Array]))).stage,
        "decompress",
      )
    }),
  )

  it.effect("an interrupted batch spends the context", () =>
    Effect.gen(function* () {
      const frames = yield* frameStream([message(1), bulky(3_000_000), message(2)])
      const context = yield* ZstdStream.make({ maxMessageBytes: limit, chunkBytes: 16 * 1024 })
      const fiber = yield* Effect.forkChild(context.decompress(frames))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      const exit = yield* Fiber.await(fiber)
      if (Exit.isSuccess(exit)) return // decoded before the interruption landed: nothing to check
      assert.isTrue(context.closed())
      assert.strictEqual((yield* Effect.flip(context.decompress(frames))).stage, "decompress")
    }),
  )
})
