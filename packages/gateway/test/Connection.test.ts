/** A connection's handshake and its handling of bad input, on the in-memory transport. */
import { assert, describe, it } from "@effect/vitest"
import { Connection, type GatewayError } from "@vigil/gateway"
import { MemoryTransport, Payloads, Settle } from "@vigil/gateway/testing"
import { Deferred, Effect, Exit, Fiber, Layer, Random, Redacted } from "effect"
import { TestClock } from "effect/testing"

const interval = 41_250
const env = Layer.merge(
  MemoryTransport.MemoryTransport.layer,
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 }),
)

const start = (overrides: Partial<Connection.ConnectionOptions> = {}) =>
  Effect.gen(function* () {
    const gateway = yield* MemoryTransport.MemoryTransport
    const events: Array<Connection.ConnectionEvent> = []
    const fiber = yield* Effect.forkChild(
      Connection.run({
        url: "memory://gateway",
        token: Redacted.make("secret-token-value"),
        intents: 1,
        shard: [0, 1],
        handshake: { _tag: "identify" },
        onEvent: (e) => Effect.sync(() => void events.push(e)),
        ...overrides,
      }),
    )
    const peer = yield* gateway.accept
    return { fiber, peer, events }
  })

const failure = (exit: Exit.Exit<unknown, GatewayError.ConnectionError>) =>
  Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined

describe("Connection handshake", () => {
  it.effect("sends Identify after Hello with token, intents and shard", () =>
    Effect.gen(function* () {
      const { peer } = yield* start({ shard: [3, 8], intents: 513 })
      yield* peer.send(Payloads.hello(interval))
      yield* Settle.settle
      const identify = JSON.parse(peer.sent[0]!.text)
      assert.strictEqual(identify.op, 2)
      assert.strictEqual(identify.d.token, "secret-token-value")
      assert.strictEqual(identify.d.intents, 513)
      assert.deepStrictEqual(identify.d.shard, [3, 8])
      assert.deepStrictEqual(Object.keys(identify.d.properties).sort(), ["browser", "device", "os"])
    }).pipe(Effect.provide(env)),
  )

  it.effect("sends Resume with session and sequence when resuming", () =>
    Effect.gen(function* () {
      const { peer } = yield* start({ handshake: { _tag: "resume", sessionId: "abc", seq: 42 } })
      yield* peer.send(Payloads.hello(interval))
      yield* Settle.settle
      assert.deepStrictEqual(JSON.parse(peer.sent[0]!.text), {
        op: 6,
        d: { token: "secret-token-value", session_id: "abc", seq: 42 },
      })
    }).pipe(Effect.provide(env)),
  )

  it.effect("a stalled handshake (no READY, no frames) ends with HandshakeTimeout", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start({ handshakeTimeout: 15_000 })
      yield* peer.send(Payloads.hello(interval))
      yield* Settle.settle
      yield* peer.send(Payloads.ack) // a frame at t=0: the silence starts now
      yield* Settle.settle
      yield* TestClock.adjust(14_999)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(1)
      const error = failure(yield* Fiber.await(fiber))
      assert.strictEqual(error?._tag, "HandshakeTimeout")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a server that ACKs every beat but never answers Identify: HandshakeTimeout all the same", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start({ handshakeTimeout: 30_000 })
      yield* peer.send(Payloads.hello(5_000))
      yield* Settle.settle // Identify at t=0
      let acked = 0
      for (let ms = 0; ms < 29_000; ms += 1_000) {
        yield* TestClock.adjust(1_000)
        for (; acked < peer.sent.filter((f) => f.op === 1).length; acked++) yield* peer.send(Payloads.ack)
        yield* Settle.settle
      }
      assert.isAtLeast(acked, 5, "the server kept ACKing")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(1_000)
      const error = failure(yield* Fiber.await(fiber))
      assert.strictEqual(error?._tag, "HandshakeTimeout")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a long replay before RESUMED is progress, not a timeout", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start({
        handshake: { _tag: "resume", sessionId: "s", seq: 0 },
        handshakeTimeout: 10_000,
      })
      yield* peer.send(Payloads.hello(interval))
      for (let n = 1; n <= 5; n++) {
        yield* TestClock.adjust(8_000)
        yield* peer.send(Payloads.dispatch(n, "MESSAGE_CREATE", {}))
        yield* Settle.settle
      }
      yield* peer.send(Payloads.dispatch(6, "RESUMED", null))
      yield* Settle.settle
      assert.isUndefined(fiber.pollUnsafe())
    }).pipe(Effect.provide(env)),
  )

  it.effect("op 7 may arrive before Hello: ReconnectRequested", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.send(Payloads.reconnect)
      assert.strictEqual(failure(yield* Fiber.await(fiber))?._tag, "ReconnectRequested")
    }).pipe(Effect.provide(env)),
  )

  it.effect("Invalid Session carries whether it is resumable", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send(Payloads.invalidSession(false))
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.InvalidSession
      assert.strictEqual(error._tag, "InvalidSession")
      assert.isFalse(error.resumable)
    }).pipe(Effect.provide(env)),
  )

  it.effect("a heartbeat request read after the close frame: its failed write is not the outcome", () =>
    Effect.gen(function* () {
      // The consumer holds the reader while op 1 and then close 4004 arrive: the reader
      // answers op 1 on a socket already closed, then reads the close.
      const release = yield* Deferred.make<void>()
      const { fiber, peer } = yield* start({
        onEvent: (e) => (e._tag === "Dispatches" ? Deferred.await(release) : Effect.void),
      })
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send(Payloads.ready(1))
      yield* Settle.settle
      yield* peer.send(Payloads.heartbeatRequest)
      yield* peer.close(4004, "Authentication failed.")
      yield* Deferred.succeed(release, undefined)
      const error = failure(yield* Fiber.await(fiber))
      assert.strictEqual(error?._tag, "AuthenticationFailed")
      assert.strictEqual(peer.lateSends.length, 1, "the beat was attempted after the close")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a server close with a fatal code fails with the fatal error", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.send(Payloads.hello(interval))
      yield* peer.close(4014, "Disallowed intent(s).")
      const error = failure(yield* Fiber.await(fiber))
      assert.strictEqual(error?._tag, "DisallowedIntents")
    }).pipe(Effect.provide(env)),
  )
})

describe("Connection: the session's sequence", () => {
  it.effect("heartbeats carry the caller's sequence, not one the connection keeps beside it", () =>
    Effect.gen(function* () {
      let owned: number | null = 40
      const { peer } = yield* start({ sequence: Effect.sync(() => owned) })
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send(Payloads.ready(1))
      yield* peer.send(Payloads.dispatch(2, "MESSAGE_CREATE", {}))
      yield* Settle.settle
      yield* TestClock.adjust(interval * 0.5)
      owned = 41
      yield* peer.send(Payloads.ack)
      yield* TestClock.adjust(interval)
      assert.deepStrictEqual(
        peer.sent.filter((f) => f.op === 1).map((f) => f.text),
        ['{"op":1,"d":40}', '{"op":1,"d":41}'],
      )
    }).pipe(Effect.provide(env)),
  )

  it.effect("run alone, a resuming connection starts from the Resume's sequence", () =>
    Effect.gen(function* () {
      const { peer } = yield* start({ handshake: { _tag: "resume", sessionId: "s", seq: 17 } })
      yield* peer.send(Payloads.hello(interval))
      yield* Settle.settle
      yield* TestClock.adjust(interval * 0.5)
      assert.deepStrictEqual(
        peer.sent.filter((f) => f.op === 1).map((f) => f.text),
        ['{"op":1,"d":17}'],
      )
    }).pipe(Effect.provide(env)),
  )
})

describe("Connection: retire (a logout that reads to the server's close)", () => {
  it.effect(
    "the close frame (1000) goes out first; the dispatches the server sent before it are still delivered",
    () =>
      Effect.gen(function* () {
        const stop = yield* Deferred.make<Connection.StopMode>()
        const gate = yield* Deferred.make<void>()
        const seqs: Array<number> = []
        const { fiber, peer } = yield* start({
          stop: Deferred.await(stop),
          onEvent: (e) =>
            e._tag === "Dispatches"
              ? Effect.andThen(
                  e.dispatches[0]!.seq > 1 ? Deferred.await(gate) : Effect.void,
                  Effect.sync(() => {
                    for (const d of e.dispatches) seqs.push(d.seq)
                  }),
                )
              : Effect.void,
        })
        yield* peer.send(Payloads.hello(interval))
        yield* peer.send(Payloads.ready(1))
        yield* Settle.settle
        // the reader holds 2 (its consumer is slow); 3 and 4 wait unread behind it
        for (const seq of [2, 3, 4]) yield* peer.send(Payloads.dispatch(seq, "MESSAGE_CREATE", { n: seq }))
        yield* Settle.settle
        yield* Deferred.succeed(stop, "retire")
        yield* Settle.settle
        assert.strictEqual(peer.clientCloseCode(), 1000, "the session ends: the server stops sending")
        assert.isUndefined(fiber.pollUnsafe(), "still reading")
        yield* Deferred.succeed(gate, undefined)
        yield* Settle.settle
        assert.deepStrictEqual(seqs, [1, 2, 3, 4])
        assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      }).pipe(Effect.provide(env)),
  )

  it.effect("a reader held past 5 s ends it all the same; no heartbeat follows the close frame", () =>
    Effect.gen(function* () {
      const stop = yield* Deferred.make<Connection.StopMode>()
      const { fiber, peer } = yield* start({
        stop: Deferred.await(stop),
        onEvent: (e) => (e._tag === "Dispatches" && e.dispatches[0]!.seq > 1 ? Effect.never : Effect.void),
      })
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send(Payloads.ready(1))
      yield* Settle.settle
      // the first beat is due at half the interval (jitter 0.5): within the retire's 5 s
      yield* TestClock.adjust(interval * 0.5 - 2_000)
      yield* peer.send(Payloads.dispatch(2, "MESSAGE_CREATE", {}))
      yield* Deferred.succeed(stop, "retire")
      yield* Settle.settle
      yield* TestClock.adjust(4_999)
      assert.isUndefined(fiber.pollUnsafe())
      assert.deepStrictEqual(peer.lateSends, [], "the heartbeat stopped before the close frame")
      yield* TestClock.adjust(1)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.strictEqual(peer.clientCloseCode(), 1000)
    }).pipe(Effect.provide(env)),
  )
})

describe("Connection: bad input gets a typed error and nothing else breaks", () => {
  it.effect("malformed JSON: DecodeError without the frame's content, resumable close", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.send(Payloads.hello(interval))
      yield* peer.sendRaw('{"op":0,"d":{"token":"secret-token-value"')
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.DecodeError
      assert.strictEqual(error._tag, "DecodeError")
      assert.strictEqual(error.stage, "json")
      assert.notInclude(error.message, "secret")
      assert.notInclude(JSON.stringify(error), "secret")
      assert.strictEqual(peer.clientCloseCode(), 4900)
    }).pipe(Effect.provide(env)),
  )

  it.effect("an envelope without an integer op: DecodeError (envelope)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.sendRaw('{"d":null}')
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.DecodeError
      assert.strictEqual(error.stage, "envelope")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a dispatch without a sequence: DecodeError (envelope)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.sendRaw('{"op":0,"t":"MESSAGE_CREATE","d":{}}')
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.DecodeError
      assert.strictEqual(error.stage, "envelope")
    }).pipe(Effect.provide(env)),
  )

  it.effect("an unknown opcode is reported as a warning; the connection goes on", () =>
    Effect.gen(function* () {
      const { fiber, peer, events } = yield* start()
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send({ op: 99, d: null, s: null, t: null })
      yield* peer.send(Payloads.ready(1))
      yield* Settle.settle
      assert.isUndefined(fiber.pollUnsafe())
      const warning = events.find((e) => e._tag === "Warning")
      assert.strictEqual(warning?._tag === "Warning" ? warning.error.detail : undefined, "unknown opcode 99")
      assert.isTrue(events.some((e) => e._tag === "Ready"))
    }).pipe(Effect.provide(env)),
  )

  it.effect("an oversized message: DecodeError (size)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start({ maxMessageBytes: 1024 })
      yield* peer.send(Payloads.dispatch(1, "GUILD_CREATE", { blob: "x".repeat(2048) }))
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.DecodeError
      assert.strictEqual(error.stage, "size")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a binary frame that is not UTF-8 without compression: DecodeError", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.sendRaw(new Uint8Array([0xff, 0xfe, 0x00]))
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.DecodeError
      assert.strictEqual(error._tag, "DecodeError")
    }).pipe(Effect.provide(env)),
  )

  it.effect("READY without a session: DecodeError (payload)", () =>
    Effect.gen(function* () {
      const { fiber, peer } = yield* start()
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send(Payloads.dispatch(1, "READY", { v: 10 }))
      const error = failure(yield* Fiber.await(fiber)) as GatewayError.DecodeError
      assert.strictEqual(error.stage, "payload")
    }).pipe(Effect.provide(env)),
  )

  it.effect("compression asked of a runtime without codecs: typed CompressionUnavailable, no socket", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const exit = yield* Effect.exit(
        Connection.run({
          url: "memory://gateway",
          token: Redacted.make("t"),
          intents: 1,
          shard: [0, 1],
          handshake: { _tag: "identify" },
          compression: "zstd-stream",
        }),
      )
      const error = failure(exit) as GatewayError.CompressionUnavailable
      assert.strictEqual(error._tag, "CompressionUnavailable")
      assert.strictEqual(gateway.peers().length, 0)
    }).pipe(Effect.provide(env)),
  )
})

describe("Connection stop signal", () => {
  it.effect("a logout asked for during the handshake takes effect at READY: close 1000, run succeeds", () =>
    Effect.gen(function* () {
      const signal = Connection.makeStopSignal()
      const { fiber, peer } = yield* start({ stop: signal })
      yield* peer.send(Payloads.hello(interval))
      yield* Settle.settle
      signal.request("logout")
      signal.request("disconnect") // the first request counts
      yield* Settle.settle
      assert.isTrue(peer.isOpen(), "the handshake is not cut short")
      yield* peer.send(Payloads.ready(1))
      yield* Settle.settle
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.strictEqual(peer.clientCloseCode(), 1000)
    }).pipe(Effect.provide(env)),
  )

  it.effect("a disconnect asked for once READY ends the run at once with a resumable code", () =>
    Effect.gen(function* () {
      const signal = Connection.makeStopSignal()
      const { fiber, peer } = yield* start({ stop: signal })
      yield* peer.send(Payloads.hello(interval))
      yield* peer.send(Payloads.ready(1))
      yield* Settle.settle
      assert.isUndefined(fiber.pollUnsafe(), "READY and idle: running")
      signal.request("disconnect")
      yield* Settle.settle
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.notStrictEqual(peer.clientCloseCode(), 1000)
      assert.isFalse(peer.isOpen())
    }).pipe(Effect.provide(env)),
  )
})
