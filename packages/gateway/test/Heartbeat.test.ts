import { assert, describe, it } from "@effect/vitest"
import { Connection, GatewayError, Heartbeat } from "@vigil/gateway"
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

/** The tag of the error a finished connection failed with. */
const failureTag = (exit: Exit.Exit<unknown, unknown> | undefined) => {
  if (exit === undefined || !Exit.isFailure(exit)) return undefined
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  return reason?._tag === "Fail" ? (reason.error as { _tag: string })._tag : undefined
}

const misbehaviours = (events: ReadonlyArray<Connection.ConnectionEvent>) =>
  events.flatMap((e) => (e._tag === "Warning" && e.error._tag === "ServerMisbehaviour" ? [e.error.kind] : []))

describe("Heartbeat under a hostile server", () => {
  it.effect("100,000 heartbeat requests at once: one beat, one typed warning", () =>
    Effect.gen(function* () {
      const events: Array<Connection.ConnectionEvent> = []
      const { peer, fiber } = yield* connected({ onEvent: (e) => Effect.sync(() => void events.push(e)) })
      for (let n = 0; n < 100_000; n++) yield* peer.send(Payloads.heartbeatRequest)
      yield* settle
      assert.strictEqual(heartbeats(peer).length, 1)
      assert.deepStrictEqual(misbehaviours(events), ["heartbeat-requests"])
      assert.isUndefined(fiber.pollUnsafe(), "the connection goes on")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a storm of requests for 10 s is answered at most once a second", () =>
    Effect.gen(function* () {
      const { peer, fiber } = yield* connected()
      for (let ms = 0; ms < 10_000; ms += 50) {
        for (let n = 0; n < 100; n++) yield* peer.send(Payloads.heartbeatRequest)
        yield* peer.send(Payloads.ack)
        yield* TestClock.adjust(50)
      }
      // 10 requested beats (one per second) and the scheduled first beat at interval × jitter.
      assert.isAtMost(heartbeats(peer).length, 11)
      assert.isAtLeast(heartbeats(peer).length, 10)
      assert.isUndefined(fiber.pollUnsafe())
    }).pipe(Effect.provide(env)),
  )

  it.effect("a 1 ms heartbeat_interval is clamped: at most one beat a second, reported", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const events: Array<Connection.ConnectionEvent> = []
      const fiber = yield* Effect.forkChild(
        Connection.run(options({ onEvent: (e) => Effect.sync(() => void events.push(e)) })),
      )
      const peer = yield* gateway.accept
      yield* peer.send(Payloads.hello(1))
      yield* settle
      yield* peer.send(Payloads.ready(1))
      for (let ms = 0; ms < 10_000; ms += 10) {
        yield* peer.send(Payloads.ack)
        yield* TestClock.adjust(10)
      }
      const beats = heartbeats(peer).map((f) => f.at)
      assert.isAtMost(beats.length, 10)
      assert.isTrue(
        beats.slice(1).every((t, i) => t - beats[i]! >= Heartbeat.minimumIntervalMillis),
        `beats at ${beats.join(", ")}`,
      )
      assert.deepStrictEqual(misbehaviours(events), ["heartbeat-interval"])
      const hello = events.find((e) => e._tag === "Hello")
      assert.strictEqual(hello?._tag === "Hello" ? hello.intervalMillis : undefined, 1_000)
      assert.isUndefined(fiber.pollUnsafe())
    }).pipe(Effect.provide(env)),
  )

  it.effect("a missed ACK while waiting for the identify slot: ZombieDetected, not a wait forever", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const fiber = yield* Effect.forkChild(Connection.run(options({ beforeIdentify: Effect.never })))
      const peer = yield* gateway.accept
      yield* peer.send(Payloads.hello(interval))
      yield* settle
      yield* TestClock.adjust(interval * jitter) // beat 1, never ACKed
      yield* TestClock.adjust(interval)
      assert.strictEqual(failureTag(fiber.pollUnsafe()), "ZombieDetected")
      assert.isFalse(
        peer.sent.some((f) => f.op === 2),
        "never identified",
      )
    }).pipe(Effect.provide(env)),
  )

  it.effect("a missed ACK during the handshake: ZombieDetected at the next beat, before READY", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const fiber = yield* Effect.forkChild(Connection.run(options({ handshakeTimeout: 600_000 })))
      const peer = yield* gateway.accept
      yield* peer.send(Payloads.hello(interval))
      yield* settle
      yield* TestClock.adjust(interval * jitter) // beat 1, never ACKed; no READY either
      yield* TestClock.adjust(interval - 1)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(1)
      assert.strictEqual(failureTag(fiber.pollUnsafe()), "ZombieDetected")
    }).pipe(Effect.provide(env)),
  )

  it.effect("the ACK of a requested beat does not stand in for a scheduled beat's missing one", () =>
    Effect.gen(function* () {
      const { peer, fiber } = yield* connected()
      yield* TestClock.adjust(interval * jitter) // scheduled beat 1
      yield* peer.send(Payloads.heartbeatRequest) // requested beat
      yield* settle
      yield* peer.send(Payloads.ack) // one ACK for two beats
      yield* TestClock.adjust(interval) // scheduled beat 2
      yield* peer.send(Payloads.ack)
      assert.strictEqual(heartbeats(peer).length, 3)
      // three beats, two ACKs: the next beat finds one unanswered
      yield* TestClock.adjust(interval)
      assert.strictEqual(failureTag(fiber.pollUnsafe()), "ZombieDetected")
      assert.strictEqual(heartbeats(peer).length, 3)
    }).pipe(Effect.provide(env)),
  )

  it.effect("ACKs with no beat outstanding are not round trips; the last few are kept", () =>
    Effect.gen(function* () {
      const samples: Array<{ millis: number; recent: ReadonlyArray<number> }> = []
      const { peer } = yield* connected({
        onEvent: (e) =>
          Effect.sync(() =>
            e._tag === "Latency"
              ? void samples.push({ millis: e.millis, recent: e.recentMillis })
              : undefined,
          ),
      })
      yield* peer.send(Payloads.ack) // before any beat
      yield* TestClock.adjust(interval * jitter)
      for (let n = 1; n <= 7; n++) {
        yield* TestClock.adjust(n * 10)
        yield* peer.send(Payloads.ack)
        yield* peer.send(Payloads.ack) // a duplicate: nothing outstanding any more
        yield* settle
        yield* TestClock.adjust(interval - n * 10)
      }
      assert.deepStrictEqual(
        samples.map((s) => s.millis),
        [10, 20, 30, 40, 50, 60, 70],
      )
      assert.deepStrictEqual(samples[6]!.recent, [30, 40, 50, 60, 70])
    }).pipe(Effect.provide(env)),
  )
})
