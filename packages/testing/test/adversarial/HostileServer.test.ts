/**
 * The hostile behaviours of FakeGateway, seen from a bare client (independent of Vigil's):
 * each does what it says on the wire, and is recorded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { FakeGateway, Recording } from "../../src/index.ts"
import { connect, token } from "../support.ts"

const ready = (gateway: FakeGateway.FakeGatewayService, compress?: "zlib-stream" | "zstd-stream") =>
  Effect.gen(function* () {
    const client = yield* connect(gateway.connectUrl({ compress }), compress ? { compress } : {})
    yield* client.next()
    const payload = yield* client.identify()
    assert.strictEqual(payload.t, "READY", "identified")
    return { client, sessionId: payload.d.session_id as string }
  })

describe("FakeGateway as a hostile server", () => {
  it.live("endAfterHandshake close: READY arrives, then the close frame, on every connection", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 60_000,
        endAfterHandshake: { close: 4000 },
      })
      const { client, sessionId } = yield* ready(gateway)
      assert.strictEqual((yield* client.closed()).code, 4000)
      const again = yield* connect(gateway.connectUrl())
      yield* again.next()
      yield* again.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.strictEqual((yield* again.next()).t, "RESUMED", "4000 keeps the session")
      assert.strictEqual((yield* again.closed()).code, 4000, "ended after RESUMED too")
      assert.lengthOf(Recording.faults(yield* gateway.entries, "end-after-handshake"), 2)
    }),
  )

  it.live("endAfterHandshake 1006 drops TCP; 1005 sends a close frame without a code", () =>
    Effect.gen(function* () {
      for (const code of [1006, 1005]) {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 60_000,
          endAfterHandshake: { close: code },
        })
        const { client } = yield* ready(gateway)
        assert.strictEqual((yield* client.closed()).code, code)
      }
    }),
  )

  it.live("endAfterHandshake op 7, and a malformed frame", () =>
    Effect.gen(function* () {
      const seven = yield* FakeGateway.make({
        token,
        heartbeatInterval: 60_000,
        endAfterHandshake: "reconnect",
      })
      const first = yield* ready(seven)
      assert.strictEqual((yield* first.client.nextWhere((p) => p.op !== 0)).op, 7)

      const malformed = yield* FakeGateway.make({
        token,
        heartbeatInterval: 60_000,
        endAfterHandshake: "malformed",
      })
      const second = yield* ready(malformed)
      yield* second.client.poll(300)
      const last = second.client.frames.at(-1)!.toString("utf8")
      assert.strictEqual(last, "{malformed")
      assert.lengthOf(Recording.sent(yield* malformed.entries, -1), 1)
    }),
  )

  it.live("close with linger: the close frame comes, TCP stays open and silent, then is destroyed", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000 })
      const { client } = yield* ready(gateway)
      yield* gateway.close("latest", 4004, { linger: 700 })
      yield* Effect.sleep(300)
      assert.strictEqual(client.ws.readyState, client.ws.CLOSING, "the close frame arrived")
      assert.isFalse(client.isClosed(), "but TCP is still open")
      const closed = yield* client.closed(3000)
      assert.strictEqual(closed.code, 4004)
      const recorded = yield* gateway.awaitEntry((e): e is Recording.Closed => e._tag === "Closed")
      assert.deepStrictEqual([recorded.by, recorded.code], ["server", 4004])
    }),
  )

  it.live("ignoreHandshake: heartbeats are ACKed, Identify and Resume never answered", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000, ignoreHandshake: true })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      yield* client.send({ op: 2, d: { token, properties: {}, intents: 1, shard: [0, 1] } })
      yield* client.heartbeat(null)
      assert.strictEqual((yield* client.next()).op, 11)
      assert.isUndefined(yield* client.poll(300), "no READY")
      assert.strictEqual(Recording.identifyAttempts(yield* gateway.entries), 1)
      assert.strictEqual(Recording.identifyCount(yield* gateway.entries), 0)
    }),
  )

  it.live("flood: op 1 and op 7 storms, back to back", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000 })
      const { client } = yield* ready(gateway)
      yield* gateway.flood("latest", 1, 500)
      yield* gateway.flood("latest", 7, 20)
      const ops: Array<number> = []
      for (let i = 0; i < 520; i++) ops.push((yield* client.nextWhere((p) => p.op !== 0)).op)
      assert.strictEqual(ops.filter((op) => op === 1).length, 500)
      assert.strictEqual(ops.filter((op) => op === 7).length, 20)
    }),
  )

  it.live.each(["zlib-stream", "zstd-stream"] as const)(
    "bomb over %s: a small frame, a huge output",
    (compress) =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000 })
        const { client } = yield* ready(gateway, compress)
        const before = client.frames.length
        yield* gateway.bomb("latest", { count: 1_000_000 })
        const [sent] = Recording.sent(yield* gateway.entries, -1)
        assert.isDefined(sent)
        assert.isBelow(sent!.bytes, 20_000, "a few KiB on the wire")
        yield* Effect.sleep(100)
        const frames = client.frames.slice(before)
        assert.strictEqual(
          frames.reduce((n, f) => n + f.length, 0),
          sent!.bytes,
        )
      }),
  )
})
