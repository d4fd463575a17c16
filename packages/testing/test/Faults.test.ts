/**
 * Each fault a test can inject, seen from a plain client, and recorded on the server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { eventually } from "../src/Eventually.ts"
import { FakeGateway, Recording } from "../src/index.ts"
import { connect, token } from "./support.ts"

const ready = (gateway: FakeGateway.FakeGatewayService, shard: readonly [number, number] = [0, 1]) =>
  Effect.gen(function* () {
    const client = yield* connect(gateway.connectUrl())
    yield* client.next()
    const payload = yield* client.identify({ shard })
    assert.strictEqual(payload.t, "READY", "identified")
    return { client, sessionId: payload.d.session_id as string }
  })

describe("FakeGateway faults", () => {
  it.live("stopAcks: heartbeats go unanswered while dispatches still flow; resumeAcks restores them", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client } = yield* ready(gateway)
      assert.deepStrictEqual(yield* gateway.stopAcks("latest"), [1])
      yield* client.heartbeat(1)
      yield* gateway.dispatch("latest", "MESSAGE_CREATE", {})
      assert.strictEqual((yield* client.next()).t, "MESSAGE_CREATE")
      assert.isUndefined(yield* client.poll(150), "no ACK")
      yield* gateway.resumeAcks("latest")
      yield* client.heartbeat(2)
      assert.strictEqual((yield* client.next()).op, 11)
      assert.lengthOf(Recording.faults(yield* gateway.entries, "stop-acks"), 1)
    }),
  )

  it.effect("delayAcks: the ACK comes, but late (exactly the delay)", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client } = yield* ready(gateway)
      yield* gateway.delayAcks("latest", 300)
      yield* client.heartbeat(1)
      yield* gateway.awaitEntry((e) => e._tag === "Received" && e.op === 1)
      const acks = Effect.map(gateway.entries, (entries) =>
        entries.filter((e) => e._tag === "Sent" && e.op === 11),
      )
      yield* TestClock.adjust(299)
      assert.lengthOf(yield* acks, 0, "not yet")
      yield* TestClock.adjust(1)
      assert.lengthOf(yield* acks, 1)
      assert.strictEqual((yield* client.next()).op, 11)
      const connections = yield* gateway.connections
      assert.deepStrictEqual(connections[0]!.acks, { delayMillis: 300 })
    }),
  )

  it.live("requestHeartbeat sends op 1; reconnect sends op 7", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client } = yield* ready(gateway)
      yield* gateway.requestHeartbeat("latest")
      const request = yield* client.next()
      assert.deepStrictEqual([request.op, request.d], [1, null])
      yield* gateway.reconnect({ shard: 0 })
      assert.strictEqual((yield* client.next()).op, 7)
    }),
  )

  it.live("invalidSession(true): op 9 true, and the session still resumes", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      yield* gateway.invalidSession("latest", true)
      const op9 = yield* client.next()
      assert.deepStrictEqual([op9.op, op9.d], [9, true])
      // on the same socket, as Discord allows
      yield* client.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.strictEqual((yield* client.next()).t, "RESUMED")
    }),
  )

  it.live("invalidSession(false): op 9 false, and the session is gone", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      yield* gateway.invalidSession({ session: sessionId }, false)
      assert.deepStrictEqual((yield* client.next()).d, false)
      yield* client.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.deepStrictEqual((yield* client.next()).d, false)
    }),
  )

  it.live("invalidate: the connection stays, but a later Resume is refused", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      assert.deepStrictEqual(yield* gateway.invalidate({ shard: 0 }), [sessionId])
      assert.isFalse(client.isClosed())
      yield* client.close(4900)
      const other = yield* connect(gateway.connectUrl())
      yield* other.next()
      yield* other.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.deepStrictEqual((yield* other.next()).d, false)
    }),
  )

  it.live("close with any code: the client sees it; resumable codes keep the session", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000, identifyWindow: 1 })
      const { client, sessionId } = yield* ready(gateway)
      yield* gateway.close("latest", 4000, { reason: "chaos" })
      const closed = yield* client.closed()
      assert.deepStrictEqual(closed, { code: 4000, reason: "chaos" })
      assert.isTrue((yield* gateway.sessions)[0]!.resumable)
      const recorded = yield* gateway.awaitEntry((e): e is Recording.Closed => e._tag === "Closed")
      assert.deepStrictEqual([recorded.by, recorded.code, recorded.reason], ["server", 4000, "chaos"])

      const ended = yield* ready(gateway)
      yield* gateway.close({ session: ended.sessionId }, 1000)
      assert.strictEqual((yield* ended.client.closed()).code, 1000)
      const sessions = yield* gateway.sessions
      assert.isFalse(sessions.find((s) => s.id === ended.sessionId)!.resumable, "1000 ends the session")
      assert.isTrue(sessions.find((s) => s.id === sessionId)!.resumable)
    }),
  )

  it.live("close refuses codes a close frame cannot carry", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      yield* ready(gateway)
      const error = yield* Effect.flip(gateway.close("latest", 1006))
      assert.strictEqual(error._tag, "InvalidCloseCode")
    }),
  )

  it.live("drop: the TCP link goes without a close frame (1006); the session resumes", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      yield* gateway.drop("latest")
      assert.strictEqual((yield* client.closed()).code, 1006)
      const again = yield* connect(gateway.connectUrl())
      yield* again.next()
      yield* again.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.strictEqual((yield* again.next()).t, "RESUMED")
      const closed = yield* gateway.awaitEntry((e): e is Recording.Closed => e._tag === "Closed")
      assert.deepStrictEqual([closed.by, closed.code], ["server", 1006])
    }),
  )

  it.live("halfOpen: TCP stays up, nothing is answered, not even a close frame", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 100, heartbeatGrace: 50 })
      const { client } = yield* ready(gateway)
      yield* gateway.halfOpen("latest")
      yield* client.heartbeat(1)
      yield* gateway.dispatch("latest", "MESSAGE_CREATE", {})
      assert.isUndefined(yield* client.poll(400), "no ACK, no dispatch, and no heartbeat-timeout close")
      assert.isFalse(client.isClosed())
      // A close frame goes unanswered: the client's close handshake never completes.
      yield* client.close(4900)
      assert.isUndefined(yield* client.poll(200))
      assert.isFalse(client.isClosed(), "no close frame came back")
      yield* client.terminate
      yield* client.closed()
      const closed = yield* gateway.awaitEntry((e): e is Recording.Closed => e._tag === "Closed")
      assert.strictEqual(closed.by, "network", "the server saw only the TCP link end")
      const entries = yield* gateway.entries
      assert.isTrue(Recording.only(entries, "Withheld").some((w) => w.t === "MESSAGE_CREATE"))
      assert.lengthOf(Recording.received(entries, 1), 0, "the heartbeat was never read")
      assert.lengthOf(Recording.faults(entries, "heartbeat-timeout"), 0)
    }),
  )

  it.live("restart with sessions kept: same port, sockets dropped, the session resumes", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      yield* gateway.restart({ sessions: "keep" })
      assert.strictEqual((yield* client.closed()).code, 1006)
      const again = yield* connect(gateway.connectUrl())
      yield* again.next()
      yield* again.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.strictEqual((yield* again.next()).t, "RESUMED")
    }),
  )

  // Live: stopping a real server is socket work that TestClock cannot wait for.
  it.live("restart with sessions lost, and a downtime during which connections are refused", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { sessionId } = yield* ready(gateway)
      // A downtime far longer than it takes to see the port closed, on a loaded machine too.
      const restarting = yield* Effect.forkChild(gateway.restart({ sessions: "drop", downtime: 3_000 }))
      let refused = ""
      yield* eventually(
        Effect.map(Effect.flip(connect(gateway.connectUrl())), (error) => {
          refused = error.detail
          return /ECONNREFUSED/.test(error.detail)
        }).pipe(
          Effect.orElseSucceed(() => false),
          Effect.scoped,
        ),
        "connections refused",
      )
      assert.match(refused, /ECONNREFUSED/)
      assert.isUndefined(restarting.pollUnsafe(), "still down")
      yield* Fiber.join(restarting) // the restart completes (it fails the test if it fails)
      const again = yield* connect(gateway.connectUrl())
      yield* again.next()
      yield* again.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.deepStrictEqual((yield* again.next()).d, false)
      const entries = yield* gateway.entries
      assert.lengthOf(Recording.faults(entries, "stop"), 1)
      assert.lengthOf(Recording.faults(entries, "start"), 1)
    }),
  )
})

describe("FakeGateway stop and start", () => {
  it.live("stop keeps the port closed until start; sessions kept resume afterwards", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      yield* gateway.stop()
      assert.strictEqual((yield* client.closed()).code, 1006)
      assert.strictEqual(yield* gateway.openSockets, 0)
      assert.match((yield* Effect.flip(connect(gateway.connectUrl()))).detail, /ECONNREFUSED/)
      yield* gateway.start
      yield* gateway.start // already listening: nothing happens
      const again = yield* connect(gateway.connectUrl())
      yield* again.next()
      yield* again.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      assert.strictEqual((yield* again.next()).t, "RESUMED")
    }),
  )
})

describe("FakeGateway control calls racing a closing socket", () => {
  it.live("a fault aimed at a connection that is going away returns, never hangs", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000, identifyWindow: 1 })
      for (let i = 0; i < 20; i++) {
        const { client } = yield* ready(gateway)
        yield* client.terminate
        const outcome = yield* gateway.reconnect("latest").pipe(
          Effect.map(() => "sent or withheld"),
          Effect.catchTag("NoTarget", () => Effect.succeed("already gone")),
          Effect.timeoutOrElse({ duration: 1000, orElse: () => Effect.succeed("hung") }),
        )
        assert.notStrictEqual(outcome, "hung")
        yield* gateway.awaitEntry((e) => e._tag === "Closed" && e.connection === i + 1)
      }
    }),
  )
})

describe("FakeGateway recording", () => {
  it.live("answers what the server saw: heartbeats per connection, identifies, client close codes", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000, identifyWindow: 1 })
      const a = yield* ready(gateway)
      yield* a.client.heartbeat(1)
      yield* a.client.heartbeat(1)
      yield* a.client.close(4900)
      yield* a.client.closed()
      const b = yield* ready(gateway)
      yield* b.client.heartbeat(1)
      yield* b.client.next()
      yield* gateway.awaitEntry((e) => e._tag === "Closed")
      const entries = yield* gateway.entries
      assert.deepStrictEqual(
        [...Recording.heartbeatsPerConnection(entries)],
        [
          [1, 2],
          [2, 1],
        ],
      )
      assert.strictEqual(Recording.identifyCount(entries), 2)
      assert.deepStrictEqual(Recording.clientCloses(entries), [{ connection: 1, code: 4900 }])
      assert.deepStrictEqual(Recording.dispatchesSent(entries, 2), [[1, "READY"]])
      for (let i = 1; i < entries.length; i++) {
        assert.strictEqual(entries[i]!.index, i)
        assert.isAtLeast(entries[i]!.at, entries[i - 1]!.at)
      }
    }),
  )

  it.live("max concurrently open sockets per shard", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000, identifyWindow: 1 })
      const first = yield* ready(gateway, [0, 2])
      // a second socket for shard 0 before the first one is gone: a client bug the recording shows
      const second = yield* ready(gateway, [0, 2])
      yield* first.client.terminate
      yield* second.client.terminate
      yield* gateway.awaitEntry((e) => e._tag === "Closed" && e.connection === 1)
      yield* gateway.awaitEntry((e) => e._tag === "Closed" && e.connection === 2)
      yield* ready(gateway, [0, 2])
      yield* ready(gateway, [1, 2])
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.maxOpenPerShard(entries).get(0), 2)
      assert.strictEqual(Recording.maxOpenPerShard(entries).get(1), 1)
      assert.isAtLeast(Recording.maxOpen(entries), 2)
    }),
  )

  it.live("never records the token", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client, sessionId } = yield* ready(gateway)
      yield* client.send({ op: 6, d: { token, session_id: sessionId, seq: 1 } })
      yield* client.closed()
      const entries = yield* gateway.entries
      assert.notInclude(JSON.stringify(entries), token)
      assert.strictEqual((Recording.received(entries, 2)[0]!.payload as any).d.token, "<redacted>")
    }),
  )

  it.effect("awaitEntry fails after its timeout, showing the recent recording", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      yield* ready(gateway)
      const waiting = yield* Effect.forkChild(
        Effect.flip(gateway.awaitEntry((e) => e._tag === "Resumed", { timeout: 100 })),
      )
      yield* TestClock.adjust(99)
      assert.isUndefined(waiting.pollUnsafe(), "still waiting")
      yield* TestClock.adjust(1)
      const error = yield* Fiber.join(waiting)
      assert.strictEqual(error._tag, "AwaitTimeout")
      assert.include(error.recent, "Identified")
    }),
  )

  it.live("awaitEntry resolves for an entry that comes later", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 5000 })
      const { client } = yield* ready(gateway)
      const waiting = yield* Effect.forkChild(
        gateway.awaitEntry((e): e is Recording.Received => e._tag === "Received" && e.op === 1),
      )
      yield* client.heartbeat(7)
      const entry = yield* Fiber.join(waiting)
      assert.strictEqual((entry.payload as any).d, 7)
    }),
  )
})
