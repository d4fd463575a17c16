/**
 * The outbox's writer runs only while commands wait: started when one is queued (or on attach
 * if some wait), ended once the queue is empty, never after detach; commands are written once,
 * in order, and a failed write leaves its command queued for the next connection.
 */
import { assert, describe, it } from "@effect/vitest"
import { GatewayError, Outbox } from "@vigil/gateway"
import { Effect, Fiber } from "effect"

/** A connection's writer that records what it writes and how many writing fibers it started. */
const recording = (options: { readonly failOn?: string } = {}) =>
  Effect.gen(function* () {
    const written: Array<string> = []
    const fibers: Array<Fiber.Fiber<void, GatewayError.TransportError>> = []
    const writer: Outbox.Writer = {
      acquire: Effect.void,
      write: (payload) =>
        Effect.suspend(() => {
          if (options.failOn !== undefined && payload.includes(options.failOn)) {
            return Effect.fail(new GatewayError.TransportError({ stage: "write", detail: "broken" }))
          }
          written.push(payload)
          return Effect.void
        }),
      start: (writing) =>
        Effect.map(Effect.forkDetach(writing), (fiber) => {
          fibers.push(fiber)
        }),
    }
    return { written, fibers, writer }
  })

const settleAll = <A, E>(fibers: ReadonlyArray<Fiber.Fiber<A, E>>) =>
  Effect.forEach(fibers, (fiber) => Fiber.await(fiber), { discard: true })

describe("Outbox", () => {
  it.effect("commands queued before attach are written on attach, by one writer that then ends", () =>
    Effect.gen(function* () {
      const outbox = yield* Outbox.make
      const first = yield* Effect.forkChild(outbox.send(3, { n: 1 }))
      const second = yield* Effect.forkChild(outbox.send(3, { n: 2 }))
      yield* Effect.yieldNow
      assert.strictEqual(yield* outbox.size, 2)
      const { written, fibers, writer } = yield* recording()
      yield* outbox.attach(writer)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      yield* settleAll(fibers)
      assert.deepStrictEqual(written, ['{"op":3,"d":{"n":1}}', '{"op":3,"d":{"n":2}}'])
      assert.strictEqual(fibers.length, 1)
      assert.isTrue(
        fibers.every((fiber) => fiber.pollUnsafe() !== undefined),
        "the writer ended",
      )
      assert.strictEqual(yield* outbox.size, 0)
    }),
  )

  it.effect("an attached, idle outbox starts a writer per burst of commands, none in between", () =>
    Effect.gen(function* () {
      const outbox = yield* Outbox.make
      const { written, fibers, writer } = yield* recording()
      yield* outbox.attach(writer)
      assert.strictEqual(fibers.length, 0, "nothing queued: no writer")
      yield* outbox.send(3, { n: 1 })
      yield* settleAll(fibers)
      yield* outbox.send(3, { n: 2 })
      yield* settleAll(fibers)
      assert.deepStrictEqual(written, ['{"op":3,"d":{"n":1}}', '{"op":3,"d":{"n":2}}'])
      assert.strictEqual(fibers.length, 2)
    }),
  )

  it.effect("after detach commands wait for the next connection", () =>
    Effect.gen(function* () {
      const outbox = yield* Outbox.make
      const old = yield* recording()
      yield* outbox.attach(old.writer)
      outbox.detach(old.writer)
      const waiting = yield* Effect.forkChild(outbox.send(4, { channel_id: null }))
      yield* Effect.yieldNow
      assert.strictEqual(old.fibers.length, 0)
      assert.strictEqual(yield* outbox.size, 1)
      const next = yield* recording()
      yield* outbox.attach(next.writer)
      yield* Fiber.join(waiting)
      assert.deepStrictEqual(next.written, ['{"op":4,"d":{"channel_id":null}}'])
    }),
  )

  it.effect("a failed write ends the writer and keeps its command for the next connection", () =>
    Effect.gen(function* () {
      const outbox = yield* Outbox.make
      const broken = yield* recording({ failOn: "lost" })
      yield* outbox.attach(broken.writer)
      const waiting = yield* Effect.forkChild(outbox.send(3, { lost: true }))
      yield* Effect.yieldNow
      yield* settleAll(broken.fibers)
      const exit = broken.fibers[0]!.pollUnsafe()
      assert.isTrue(exit !== undefined && exit._tag === "Failure", "the writer failed")
      assert.strictEqual(yield* outbox.size, 1)
      outbox.detach(broken.writer)
      const next = yield* recording()
      yield* outbox.attach(next.writer)
      yield* Fiber.join(waiting)
      assert.deepStrictEqual(next.written, ['{"op":3,"d":{"lost":true}}'])
    }),
  )

  it.effect("a stopped outbox fails what waits, and later sends, with ShardStopped", () =>
    Effect.gen(function* () {
      const outbox = yield* Outbox.make
      const waiting = yield* Effect.forkChild(outbox.send(3, {}))
      yield* Effect.yieldNow
      const stopped = new GatewayError.ShardStopped({ shard: [0, 1], reason: "test" })
      yield* outbox.close(stopped)
      const exit = yield* Fiber.await(waiting)
      assert.isTrue(exit._tag === "Failure")
      const later = yield* Effect.flip(outbox.send(3, {}))
      assert.strictEqual(later._tag, "ShardStopped")
    }),
  )
})
