/**
 * zlib-stream against node:zlib's deflate (one context, Z_SYNC_FLUSH per message): round
 * trips over thousands of messages, messages split across frames, large messages, corrupt
 * and truncated data, the size limits (one huge message; a batch of many large ones), and
 * isolation between connections' contexts.
 */
import { assert, describe, it } from "@effect/vitest"
import { GatewayCompression } from "@vigil/gateway/Compression"
import type { DecodeError } from "@vigil/gateway/GatewayError"
import * as NodeCompression from "@vigil/gateway-node/NodeCompression"
import { makeZlibDecompressor } from "@vigil/gateway-node/ZlibDecompressor"
import { Effect, Result } from "effect"
import { compressedStream, heldBytes, objectOfBytes } from "./compressed.ts"

const limit = 32 * 1024 * 1024

const deflateStream = (texts: ReadonlyArray<string>) => compressedStream("zlib-stream", texts)

const message = (i: number, pad = 0) =>
  JSON.stringify({
    op: 0,
    s: i,
    t: "MESSAGE_CREATE",
    d: { id: String(i), content: `hello ${i} ${"é✓".repeat(i % 7)}${"x".repeat(pad)}` },
  })

/** Pseudo-random text that does not compress away: a large GUILD_CREATE's worth. */
const bulky = (bytes: number, seed = 1) => {
  let s = seed
  const chars: Array<string> = []
  for (let i = 0; i < bytes; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff
    chars.push(String.fromCharCode(97 + (s % 26)))
  }
  return JSON.stringify({ op: 0, s: 1, t: "GUILD_CREATE", d: { blob: chars.join("") } })
}

const ok = (result: Result.Result<string | undefined, DecodeError>): string | undefined => {
  if (Result.isFailure(result)) assert.fail(`unexpected ${result.failure.message}`)
  return result.success
}

const failure = (result: Result.Result<string | undefined, DecodeError>): DecodeError => {
  if (Result.isSuccess(result)) assert.fail("expected a DecodeError")
  return result.failure
}

describe("ZlibDecompressor", () => {
  it("round-trips thousands of messages on one context", async () => {
    const texts = Array.from({ length: 3000 }, (_, i) => message(i, i % 50 === 0 ? 2000 : 0))
    const frames = await deflateStream(texts)
    const d = makeZlibDecompressor({ maxMessageBytes: limit })
    for (const [i, frame] of frames.entries()) assert.strictEqual(ok(d.push(frame)), texts[i])
  })

  it("reassembles a message split across several frames, including inside the 00 00 ff ff suffix", async () => {
    const texts = [message(1), bulky(200_000), message(2)]
    const frames = await deflateStream(texts)
    const d = makeZlibDecompressor({ maxMessageBytes: limit })
    assert.strictEqual(ok(d.push(frames[0] as Uint8Array)), texts[0])
    const big = frames[1] as Uint8Array
    const cuts = [0, 7, 1000, Math.floor(big.length / 2), big.length - 2, big.length]
    for (let i = 0; i < cuts.length - 2; i++) {
      assert.strictEqual(ok(d.push(big.subarray(cuts[i], cuts[i + 1]))), undefined)
    }
    assert.strictEqual(ok(d.push(big.subarray(cuts[cuts.length - 2]))), texts[1])
    assert.strictEqual(ok(d.push(frames[2] as Uint8Array)), texts[2])
  })

  it("inflates large messages (several MiB) and keeps going after them", async () => {
    const texts = [bulky(3_000_000, 7), message(5), bulky(1_000_000, 9), message(6)]
    const frames = await deflateStream(texts)
    const d = makeZlibDecompressor({ maxMessageBytes: limit })
    for (const [i, frame] of frames.entries()) assert.strictEqual(ok(d.push(frame)), texts[i])
  })

  it("refuses garbage as a typed decompress error, without the content in the detail", () => {
    const d = makeZlibDecompressor({ maxMessageBytes: limit })
    const garbage = new TextEncoder().encode('{"op":0,"secret":"token-like"}\u0000\u0000\uffff')
    const error = failure(d.push(new Uint8Array([...garbage, 0, 0, 0xff, 0xff])))
    assert.strictEqual(error.stage, "decompress")
    assert.notInclude(error.detail, "token-like")
    // The context is spent: later frames fail too.
    assert.strictEqual(failure(d.push(new Uint8Array([1, 2, 3]))).stage, "decompress")
  })

  it("reports corrupt bytes in the middle of the stream", async () => {
    const texts = Array.from({ length: 20 }, (_, i) => message(i, 500))
    const frames = await deflateStream(texts)
    const d = makeZlibDecompressor({ maxMessageBytes: limit })
    for (let i = 0; i < 10; i++) assert.strictEqual(ok(d.push(frames[i] as Uint8Array)), texts[i])
    const corrupt = new Uint8Array(frames[10] as Uint8Array)
    for (let i = 0; i < corrupt.length - 4; i++) corrupt[i] = (corrupt[i] as number) ^ 0xa5
    const result = d.push(corrupt)
    // Flipped bits are either refused by inflate or yield text that is not the message.
    if (Result.isFailure(result)) assert.strictEqual(result.failure.stage, "decompress")
    else assert.notStrictEqual(result.success, texts[10])
  })

  it("waits on a truncated message and refuses what follows when it cannot continue it", async () => {
    const texts = [message(1, 3000), message(2, 3000)]
    const frames = await deflateStream(texts)
    const d = makeZlibDecompressor({ maxMessageBytes: limit })
    const first = frames[0] as Uint8Array
    // The first part of a message with no suffix: not complete yet.
    assert.strictEqual(ok(d.push(first.subarray(0, first.length >> 1))), undefined)
    // A frame from a fresh stream (new zlib header) cannot continue it.
    const fresh = (await deflateStream([message(3)]))[0] as Uint8Array
    const result = d.push(fresh)
    if (Result.isFailure(result)) assert.strictEqual(result.failure.stage, "decompress")
    else assert.notStrictEqual(result.success, texts[0])
  })

  it("refuses a message above maxMessageBytes before inflating all of it", async () => {
    // 64 MiB of zeros deflate to ~64 KiB: the limit must stop inflation early.
    const bomb = JSON.stringify({ d: "0".repeat(64 * 1024 * 1024) })
    const frames = await deflateStream([message(1), bomb, message(2)])
    const d = makeZlibDecompressor({ maxMessageBytes: 1024 * 1024 })
    assert.strictEqual(ok(d.push(frames[0] as Uint8Array)), message(1))
    const before = process.memoryUsage().arrayBuffers
    const error = failure(d.push(frames[1] as Uint8Array))
    assert.strictEqual(error.stage, "size")
    assert.isBelow(process.memoryUsage().arrayBuffers - before, 16 * 1024 * 1024)
    assert.strictEqual(failure(d.push(frames[2] as Uint8Array)).stage, "size")
  })

  it("accepts a message exactly at the limit", async () => {
    const text = message(1, 10_000)
    const frames = await deflateStream([text])
    const d = makeZlibDecompressor({ maxMessageBytes: Buffer.byteLength(text) })
    assert.strictEqual(ok(d.push(frames[0] as Uint8Array)), text)
  })

  it.effect("bounds a batch's output: 2 × maxMessageBytes by default, maxBatchBytes when given", () =>
    Effect.gen(function* () {
      const mib = 1024 * 1024
      // 32 frames of ~1 KiB, each inflating to a message of exactly the limit.
      const texts = Array.from({ length: 32 }, () => objectOfBytes(mib))
      const frames = yield* Effect.promise(() => deflateStream(texts))
      assert.isBelow(
        frames.reduce((n, f) => n + f.length, 0),
        64 * 1024,
      )
      // Two messages of the limit fit the default; a third, anywhere in the batch, does not.
      const two = makeZlibDecompressor({ maxMessageBytes: mib })
      assert.deepStrictEqual(yield* two.decompress(frames.slice(0, 2)), texts.slice(0, 2))
      const before = heldBytes()
      const error = yield* Effect.flip(two.decompress(frames.slice(2)))
      assert.isBelow(heldBytes() - before, 16 * mib)
      assert.strictEqual(error.stage, "size")
      assert.include(error.detail, `one read exceeds ${2 * mib} bytes`)
      assert.strictEqual((yield* Effect.flip(two.decompress(frames.slice(2, 3)))).stage, "size")
      const wider = makeZlibDecompressor({ maxMessageBytes: mib, maxBatchBytes: 4 * mib })
      assert.deepStrictEqual(yield* wider.decompress(frames.slice(0, 4)), texts.slice(0, 4))
      assert.strictEqual((yield* Effect.flip(wider.decompress(frames.slice(4, 9)))).stage, "size")
    }),
  )

  it.effect("a batch bound spans a message split over the batch's frames", () =>
    Effect.gen(function* () {
      const kib = 1024
      const texts = [objectOfBytes(40 * kib), objectOfBytes(40 * kib)]
      const [first, second] = (yield* Effect.promise(() => deflateStream(texts))) as [Uint8Array, Uint8Array]
      const halves = [second.subarray(0, second.length >> 1), second.subarray(second.length >> 1)]
      const d = makeZlibDecompressor({ maxMessageBytes: 64 * kib, maxBatchBytes: 64 * kib })
      const error = yield* Effect.flip(d.decompress([first, ...halves]))
      assert.strictEqual(error.stage, "size")
      assert.include(error.detail, "one read")
      // Each alone fits, batch after batch: the bound is per read.
      const fresh = makeZlibDecompressor({ maxMessageBytes: 64 * kib, maxBatchBytes: 64 * kib })
      assert.deepStrictEqual(yield* fresh.decompress([first]), texts.slice(0, 1))
      assert.deepStrictEqual(yield* fresh.decompress(halves), texts.slice(1))
    }),
  )

  it.effect("a DecodeError on one connection's context leaves another's untouched (layer)", () =>
    Effect.gen(function* () {
      const texts = Array.from({ length: 50 }, (_, i) => message(i))
      const frames = (yield* Effect.promise(() => deflateStream(texts))) as Array<Uint8Array>
      const codecs = yield* GatewayCompression
      const a = yield* codecs.make("zlib-stream", { maxMessageBytes: limit })
      const b = yield* codecs.make("zlib-stream", { maxMessageBytes: limit })
      // a whole batch per call, as a connection's reader hands them over
      assert.deepStrictEqual(yield* a.decompress(frames.slice(0, 25)), texts.slice(0, 25))
      assert.deepStrictEqual(yield* b.decompress(frames.slice(0, 25)), texts.slice(0, 25))
      const error = yield* Effect.flip(
        a.decompress([new Uint8Array([0x78, 0x9c, 0xff, 0xff, 0, 0, 0xff, 0xff])]),
      )
      assert.strictEqual(error.stage, "decompress")
      assert.deepStrictEqual(yield* b.decompress(frames.slice(25)), texts.slice(25))
    }).pipe(Effect.provide(NodeCompression.layer)),
  )
})
