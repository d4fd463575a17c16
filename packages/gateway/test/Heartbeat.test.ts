import { assert, describe, it } from "@effect/vitest"
import { Connection, GatewayError } from "@vigil/gateway"
import { MemoryTransport, Payloads } from "@vigil/gateway/testing"
import { Effect, Exit, Fiber, Layer, Random, Redacted } from "effect"
import { TestClock } from "effect/testing"

const interval = 41_250
const jitter = 0.25
const token = Redacted.make("test-token")

/** Fixes the heartbeat jitter so the first beat's instant is known. */
const fixedRandom = (value: number) =>
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => value, nextIntUnsafe: () => 0 })

const env = Layer.merge(MemoryTransport.MemoryTransport.layer, fixedRandom(jitter))

const options = (overrides: Partial<Connection.ConnectionOptions> = {}): Connection.ConnectionOptions => ({
  url: "memory://gateway",
  token,
  intents: 1,
  shard: [0, 1],
  handshake: { _tag: "identify" },
  ...overrides,
})

const heartbeats = (peer: MemoryTransport.MemoryPeer) => peer.sent.filter((f) => f.op === 1)

/** Opens a connection, plays Hello and READY, and returns the peer and the client's fiber. */
const connected = (overrides: Partial<Connection.ConnectionOptions> = {}) =>
  Effect.gen(function* () {
    const gateway = yield* MemoryTransport.MemoryTransport
    const fiber = yield* Effect.forkChild(Connection.run(options(overrides)))
    const peer = yield* gateway.accept
    yield* peer.send(Payloads.hello(interval))
    yield* TestClock.adjust(0)
    yield* peer.send(Payloads.ready(1))
    yield* TestClock.adjust(0)
    return { peer, fiber, gateway }
  })

/** Lets the client's fibers run without moving time. */
const settle = TestClock.adjust(0)

describe("Heartbeat", () => {
  it.effect("first beat exactly at interval × jitter, then one per interval", () =>
    Effect.gen(function* () {
      const { peer } = yield* connected()
      const first = interval * jitter
      yield* TestClock.adjust(first - 1)
      assert.strictEqual(heartbeats(peer).length, 0)
      yield* TestClock.adjust(1)
      assert.strictEqual(heartbeats(peer).length, 1)
      assert.strictEqual(heartbeats(peer)[0]!.at, first)
      for (let n = 1; n <= 5; n++) {
        yield* peer.send(Payloads.ack)
        yield* TestClock.adjust(interval)
        assert.strictEqual(heartbeats(peer).length, n + 1)
        assert.strictEqual(heartbeats(peer)[n]!.at, first + n * interval)
      }
    }).pipe(Effect.provide(env)),
  )

  it.effect("each beat carries the last sequence received", () =>
    Effect.gen(function* () {
      const { peer } = yield* connected()
      yield* TestClock.adjust(interval * jitter)
      assert.strictEqual(heartbeats(peer)[0]!.text, '{"op":1,"d":1}')
      yield* peer.send(Payloads.ack)
      yield* peer.send(Payloads.dispatch(2, "MESSAGE_CREATE", {}))
      yield* peer.send(Payloads.dispatch(3, "MESSAGE_CREATE", {}))
      yield* TestClock.adjust(interval)
      assert.strictEqual(heartbeats(peer)[1]!.text, '{"op":1,"d":3}')
    }).pipe(Effect.provide(env)),
  )

  it.effect("the first beat before any dispatch carries null", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      yield* Effect.forkChild(Connection.run(options()))
      const peer = yield* gateway.accept
      yield* peer.send(Payloads.hello(interval))
      yield* TestClock.adjust(interval * jitter)
      assert.strictEqual(heartbeats(peer)[0]!.text, '{"op":1,"d":null}')
    }).pipe(Effect.provide(env)),
  )

  it.effect("a missed ACK fails with ZombieDetected exactly at the next beat", () =>
    Effect.gen(function* () {
      const { peer, fiber } = yield* connected()
      yield* TestClock.adjust(interval * jitter) // beat 1, never ACKed
      yield* TestClock.adjust(interval - 1)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(1)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.strictEqual(error?._tag, "Fail")
      const zombie = error?._tag === "Fail" ? (error.error as GatewayError.ZombieDetected) : undefined
      assert.strictEqual(zombie?._tag, "ZombieDetected")
      assert.strictEqual(zombie?.waitedMillis, interval)
      assert.strictEqual(zombie?.intervalMillis, interval)
      assert.isNull(zombie?.lastAckAt)
      // only the one unanswered beat went out; the zombie closed with a resumable code
      assert.strictEqual(heartbeats(peer).length, 1)
      const code = peer.clientCloseCode()
      assert.isTrue(code !== undefined && code !== 1000 && code !== 1001)
    }).pipe(Effect.provide(env)),
  )

  it.effect("ACKs in time: no zombie over thousands of intervals", () =>
    Effect.gen(function* () {
      const { peer, fiber } = yield* connected()
      yield* TestClock.adjust(interval * jitter)
      for (let n = 0; n < 3000; n++) {
        yield* peer.send(Payloads.ack)
        yield* TestClock.adjust(interval)
      }
      assert.isUndefined(fiber.pollUnsafe())
      assert.strictEqual(heartbeats(peer).length, 3001)
    }).pipe(Effect.provide(env)),
  )

  it.effect("an ACK just before the deadline counts", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* connected()
      yield* TestClock.adjust(interval * jitter)
      yield* TestClock.adjust(interval - 1)
      yield* peer.send(Payloads.ack)
      yield* TestClock.adjust(1)
      assert.isUndefined(fiber.pollUnsafe())
      assert.strictEqual(heartbeats(peer).length, 2)
    }).pipe(Effect.provide(env)),
  )

  it.effect("op 1 from the server gets an immediate beat without the zombie check", () =>
    Effect.gen(function* () {
      const { peer, fiber } = yield* connected()
      yield* TestClock.adjust(interval * jitter) // beat 1, unACKed
      yield* peer.send({ op: 1, d: null, s: null, t: null })
      yield* settle
      assert.strictEqual(heartbeats(peer).length, 2, "answered at once")
      assert.strictEqual(heartbeats(peer)[1]!.at, interval * jitter)
      assert.isUndefined(fiber.pollUnsafe(), "a requested beat does not check for the missing ACK")
      yield* peer.send(Payloads.ack)
      yield* TestClock.adjust(interval)
      assert.isUndefined(fiber.pollUnsafe())
    }).pipe(Effect.provide(env)),
  )

  it.effect("op 1 before Hello is answered too", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      yield* Effect.forkChild(Connection.run(options()))
      const peer = yield* gateway.accept
      yield* peer.send({ op: 1, d: null, s: null, t: null })
      yield* settle
      assert.strictEqual(heartbeats(peer).length, 1)
    }).pipe(Effect.provide(env)),
  )

  it.effect("measures the round trip from beat to ACK", () =>
    Effect.gen(function* () {
      const latencies: Array<number> = []
      const { peer } = yield* connected({
        onEvent: (event) =>
          Effect.sync(() => (event._tag === "Latency" ? void latencies.push(event.millis) : undefined)),
      })
      yield* TestClock.adjust(interval * jitter)
      yield* TestClock.adjust(87)
      yield* peer.send(Payloads.ack)
      yield* settle
      assert.deepStrictEqual(latencies, [87])
    }).pipe(Effect.provide(env)),
  )

  it.effect("no Hello in time fails with HelloTimeout", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const fiber = yield* Effect.forkChild(Connection.run(options({ helloTimeout: 5_000 })))
      const peer = yield* gateway.accept
      yield* TestClock.adjust(4_999)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(1)
      const exit = yield* Fiber.await(fiber)
      assert.deepStrictEqual(exit, Exit.fail(new GatewayError.HelloTimeout({ timeoutMillis: 5_000 })))
      assert.isFalse(peer.isOpen())
      assert.strictEqual(peer.sent.length, 0)
    }).pipe(Effect.provide(env)),
  )
})
