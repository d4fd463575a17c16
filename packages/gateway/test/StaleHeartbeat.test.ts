/**
 * The race that motivated Vigil: a heartbeat timer outliving its connection. Each trigger
 * is its own deterministic test (TestClock, in-memory transport). Each asserts a typed
 * outcome, no defect, and that no heartbeat is ever written after the connection closed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Connection } from "@vigil/gateway"
import { MemoryTransport, Payloads } from "@vigil/gateway/testing"
import { Cause, Effect, Exit, Fiber, Layer, Random, Redacted } from "effect"
import { TestClock } from "effect/testing"

const interval = 40_000
const jitter = 0.5
const firstBeat = interval * jitter
const env = Layer.merge(
  MemoryTransport.MemoryTransport.layer,
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => jitter, nextIntUnsafe: () => 0 }),
)

const run = Connection.run({
  url: "memory://gateway",
  token: Redacted.make("t"),
  intents: 1,
  shard: [0, 1],
  handshake: { _tag: "identify" },
})

const heartbeats = (peer: MemoryTransport.MemoryPeer) => peer.sent.filter((f) => f.op === 1).length

const start = Effect.gen(function* () {
  const gateway = yield* MemoryTransport.MemoryTransport
  const fiber = yield* Effect.forkChild(run)
  const peer = yield* gateway.accept
  yield* peer.send(Payloads.hello(interval))
  yield* peer.send(Payloads.ready(1))
  yield* TestClock.adjust(0)
  return { gateway, fiber, peer }
})

/** The connection ended with a typed failure (no defect, no interruption). */
const assertTypedFailure = (exit: Exit.Exit<unknown, unknown>, ...tags: Array<string>) => {
  assert.isTrue(Exit.isFailure(exit), "the connection ended by failing")
  if (!Exit.isFailure(exit)) return
  assert.isFalse(Cause.hasDies(exit.cause), "no defect")
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  assert.include(tags, (failure as { error: { _tag: string } } | undefined)?.error._tag)
}

/** Long after the close, time passes: nothing may be written by a stale heartbeat. */
const assertSilentAfterClose = (peer: MemoryTransport.MemoryPeer) =>
  Effect.gen(function* () {
    const before = heartbeats(peer)
    yield* TestClock.adjust(interval * 10)
    assert.strictEqual(heartbeats(peer), before, "no heartbeat after close")
    assert.deepStrictEqual(peer.lateSends, [], "nothing written to the closed socket")
    assert.isFalse(peer.isOpen())
  })

describe("stale heartbeat race", () => {
  it.effect("server closes during the first-beat jitter window", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat / 2)
      yield* peer.close(4000, "bye")
      const exit = yield* Fiber.await(fiber)
      assertTypedFailure(exit, "ServerClosed")
      assert.strictEqual(heartbeats(peer), 0)
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("the caller closes during the jitter window (interrupt)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat - 1)
      const exit = yield* Fiber.interrupt(fiber).pipe(Effect.andThen(Fiber.await(fiber)))
      assert.isTrue(Exit.hasInterrupts(exit))
      assert.isFalse(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      assert.strictEqual(peer.clientCloseCode(), 4900)
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("close arrives in the same instant the beat is due (close first)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat - 1)
      yield* peer.close(4000)
      yield* TestClock.adjust(1) // the beat's instant
      assertTypedFailure(yield* Fiber.await(fiber), "ServerClosed")
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("close arrives in the same instant the beat is due (beat first)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat)
      assert.strictEqual(heartbeats(peer), 1)
      yield* peer.close(4000)
      assertTypedFailure(yield* Fiber.await(fiber), "ServerClosed")
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("close while the zombie is being handled", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat) // beat 1, never ACKed
      yield* TestClock.adjust(interval - 1)
      // the server's close and the zombie deadline land together
      yield* peer.close(4009)
      yield* TestClock.adjust(1)
      assertTypedFailure(yield* Fiber.await(fiber), "ZombieDetected", "ServerClosed")
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("zombie, then the socket drops during teardown", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat + interval)
      yield* peer.drop
      assertTypedFailure(yield* Fiber.await(fiber), "ZombieDetected")
      assert.strictEqual(peer.clientCloseCode(), 4900, "a zombie closes with a resumable code")
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("a late ACK arriving after close changes nothing", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start
      yield* TestClock.adjust(firstBeat + interval) // zombie
      assertTypedFailure(yield* Fiber.await(fiber), "ZombieDetected")
      yield* peer.send(Payloads.ack) // the ACK the zombie waited for, too late
      yield* TestClock.adjust(0)
      yield* assertSilentAfterClose(peer)
    }).pipe(Effect.provide(env)),
  )

  it.effect("a new connection started while the old one unwinds starts with fresh ACK state", () =>
    Effect.gen(function* () {
      const { gateway, fiber: oldFiber, peer: oldPeer } = yield* start
      yield* TestClock.adjust(firstBeat) // old: beat 1 sent, never ACKed: it is awaiting an ACK
      // The new connection starts before the old one has been torn down.
      const newFiber = yield* Effect.forkChild(run)
      const newPeer = yield* gateway.accept
      yield* Fiber.interrupt(oldFiber)
      yield* newPeer.send(Payloads.hello(interval))
      yield* newPeer.send(Payloads.ready(1))
      yield* TestClock.adjust(firstBeat)
      assert.strictEqual(
        heartbeats(newPeer),
        1,
        "the new connection's first beat was sent, not judged a zombie",
      )
      yield* newPeer.send(Payloads.ack)
      for (let n = 0; n < 10; n++) {
        yield* TestClock.adjust(interval)
        yield* newPeer.send(Payloads.ack)
      }
      assert.isUndefined(newFiber.pollUnsafe(), "no zombie from the old connection's unanswered beat")
      assert.strictEqual(heartbeats(newPeer), 11)
      assert.strictEqual(heartbeats(oldPeer), 1, "the old connection's loop stopped with it")
      assert.deepStrictEqual(oldPeer.lateSends, [])
      assert.strictEqual(gateway.openCount(), 1)
    }).pipe(Effect.provide(env)),
  )
})
