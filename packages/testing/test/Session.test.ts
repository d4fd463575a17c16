/**
 * Sessions across connections: Resume and its replay, the ways a resume is refused, the
 * heartbeat timeout, the identify concurrency limit and `GET /gateway/bot`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { FakeGateway, Recording } from "../src/index.ts"
import { connect, token } from "./support.ts"

const identified = (gateway: FakeGateway.FakeGatewayService, shard: readonly [number, number] = [0, 1]) =>
  Effect.gen(function* () {
    const client = yield* connect(gateway.connectUrl())
    yield* client.next()
    const ready = yield* client.identify({ shard })
    return {
      client,
      sessionId: ready.d.session_id as string,
      resumeUrl: ready.d.resume_gateway_url as string,
    }
  })

const resumeOn = (url: string, sessionId: string, seq: number | null) =>
  Effect.gen(function* () {
    const client = yield* connect(url)
    yield* client.next()
    yield* client.send({ op: 6, d: { token, session_id: sessionId, seq } })
    return client
  })

describe("FakeGateway sessions", () => {
  it.live("Resume replays every dispatch after seq, then RESUMED, on resume_gateway_url", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const { client, sessionId, resumeUrl } = yield* identified(gateway)
      yield* gateway.emit("latest", { count: 2 }) // seq 2, 3
      yield* client.next()
      yield* client.close(4900)
      const closed = yield* client.closed()
      assert.strictEqual(closed.code, 4900)
      yield* gateway.emit({ session: sessionId }, { count: 2, type: "TYPING_START" }) // missed: seq 4, 5

      const resumed = yield* resumeOn(`${resumeUrl}?v=10&encoding=json`, sessionId, 2)
      const replayed = [yield* resumed.next(), yield* resumed.next(), yield* resumed.next()]
      assert.deepStrictEqual(
        replayed.map((p) => [p.s, p.t]),
        [
          [3, "MESSAGE_CREATE"],
          [4, "TYPING_START"],
          [5, "TYPING_START"],
        ],
      )
      const done = yield* resumed.next()
      assert.deepStrictEqual([done.op, done.t, done.s], [0, "RESUMED", 6])
      // the session carries on where it was
      yield* gateway.dispatch({ session: sessionId }, "MESSAGE_CREATE", {})
      assert.strictEqual((yield* resumed.next()).s, 7)

      const entries = yield* gateway.entries
      const resume = Recording.only(entries, "Resumed")[0]!
      assert.strictEqual(resume.replayed, 3)
      assert.strictEqual(resume.from, 2)
      assert.strictEqual(Recording.only(entries, "Opened")[1]!.path, "/resume?v=10&encoding=json")
      assert.deepStrictEqual(Recording.clientCloses(entries), [{ connection: 1, code: 4900 }])
    }),
  )

  it.live("a seq ahead of the session: 4007", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const { client, sessionId } = yield* identified(gateway)
      yield* client.terminate
      const resumed = yield* resumeOn(gateway.connectUrl(), sessionId, 99)
      assert.strictEqual((yield* resumed.closed()).code, 4007)
    }),
  )

  it.live("a seq older than the replay buffer keeps: 4007", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, replayLimit: 3 })
      const { client, sessionId } = yield* identified(gateway)
      yield* client.terminate
      yield* gateway.emit({ session: sessionId }, { count: 5 }) // seq 2..6; kept: 4, 5, 6
      const tooOld = yield* resumeOn(gateway.connectUrl(), sessionId, 2)
      assert.strictEqual((yield* tooOld.closed()).code, 4007)
      const justRight = yield* resumeOn(gateway.connectUrl(), sessionId, 3)
      assert.deepStrictEqual(
        [(yield* justRight.next()).s, (yield* justRight.next()).s, (yield* justRight.next()).s],
        [4, 5, 6],
      )
      assert.strictEqual((yield* justRight.next()).t, "RESUMED")
    }),
  )

  it.effect(
    "an unknown session, an expired one, or one the client ended with 1000: Invalid Session (false)",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 30_000,
          resumeWindow: 100,
          identifyWindow: 1,
        })
        const unknown = yield* resumeOn(gateway.connectUrl(), "no-such-session", 1)
        const answer = yield* unknown.next()
        assert.deepStrictEqual([answer.op, answer.d], [9, false])
        assert.isFalse(unknown.isClosed(), "the connection stays open for a fresh Identify")
        const ready = yield* unknown.identify()
        assert.strictEqual(ready.t, "READY")

        yield* TestClock.adjust(1) // the identify window (1 ms) of that Identify
        const first = yield* identified(gateway) // connection 2
        yield* first.client.terminate
        yield* gateway.awaitEntry((e) => e._tag === "Closed" && e.connection === 2) // detached (the clock stands still)
        yield* TestClock.adjust(100)
        const inTime = yield* resumeOn(gateway.connectUrl(), first.sessionId, 1) // connection 3
        assert.strictEqual((yield* inTime.next()).t, "RESUMED", "100 ms detached: still resumable")
        yield* inTime.terminate
        yield* gateway.awaitEntry((e) => e._tag === "Closed" && e.connection === 3)
        yield* TestClock.adjust(101)
        const expired = yield* resumeOn(gateway.connectUrl(), first.sessionId, 2)
        assert.deepStrictEqual((yield* expired.next()).d, false, "101 ms detached: expired")

        const second = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
        const ended = yield* identified(second)
        yield* ended.client.close(1000)
        yield* ended.client.closed()
        const late = yield* resumeOn(second.connectUrl(), ended.sessionId, 1)
        assert.deepStrictEqual((yield* late.next()).d, false)
        const sessions = yield* second.sessions
        assert.strictEqual(sessions[0]!.ended, "client closed with 1000")
      }),
  )

  it.live("a Resume while the session's old connection is still open takes it over", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const { client, sessionId } = yield* identified(gateway)
      const resumed = yield* resumeOn(gateway.connectUrl(), sessionId, 1)
      assert.strictEqual((yield* resumed.next()).t, "RESUMED")
      assert.strictEqual((yield* client.closed()).code, 1006, "the old socket is dropped")
      yield* gateway.dispatch({ session: sessionId }, "MESSAGE_CREATE", {})
      assert.strictEqual((yield* resumed.next()).t, "MESSAGE_CREATE")
      assert.lengthOf(Recording.faults(yield* gateway.entries, "superseded"), 1)
    }),
  )

  it.effect("heartbeats that stop: closed after interval + grace, and the session stays resumable", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 100, heartbeatGrace: 50 })
      const { client, sessionId } = yield* identified(gateway)
      const timeouts = Effect.map(gateway.entries, (entries) =>
        Recording.faults(entries, "heartbeat-timeout"),
      )
      yield* TestClock.adjust(149)
      assert.lengthOf(yield* timeouts, 0, "not before interval + grace")
      yield* TestClock.adjust(1)
      assert.lengthOf(yield* timeouts, 1)
      const closed = yield* client.closed()
      assert.strictEqual(closed.code, 4009)
      const resumed = yield* resumeOn(gateway.connectUrl(), sessionId, 1)
      assert.strictEqual((yield* resumed.next()).t, "RESUMED")
    }),
  )

  it.effect("a client that heartbeats on time is never timed out", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 200, heartbeatGrace: 100 })
      const { client } = yield* identified(gateway)
      // 10 × 250 ms: far past one interval + grace (300 ms), each heartbeat within it.
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust(250)
        yield* client.heartbeat(1)
        assert.strictEqual((yield* client.nextWhere((p) => p.op === 11)).op, 11)
      }
      assert.lengthOf(Recording.faults(yield* gateway.entries, "heartbeat-timeout"), 0)
      assert.isFalse(client.isClosed())
    }),
  )

  it.live("identifies faster than max_concurrency per window get Invalid Session (false), per bucket", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, maxConcurrency: 2 })
      const clients = yield* Effect.forEach([0, 1, 2, 3], () => connect(gateway.connectUrl()))
      for (const client of clients) yield* client.next()
      const answers = yield* Effect.forEach(clients, (client, shard) =>
        client.identify({ shard: [shard, 4] }),
      )
      // shards 0 and 1 open buckets 0 and 1; shards 2 and 3 fall in the same buckets too soon
      assert.deepStrictEqual(
        answers.map((p) => (p.op === 9 ? `op9:${p.d}` : p.t)),
        ["READY", "READY", "op9:false", "op9:false"],
      )
      assert.isFalse(clients[2]!.isClosed(), "the throttled connection may identify again later")
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.identifyCount(entries), 2)
      assert.strictEqual(Recording.identifyAttempts(entries), 4)
      const limit = yield* gateway.sessionStartLimit
      assert.strictEqual(limit.remaining, 998, "only accepted identifies use the budget")
    }),
  )

  it.effect("a bucket may identify again once its window has passed, not a millisecond before", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, identifyWindow: 500 })
      const a = yield* connect(gateway.connectUrl())
      yield* a.next()
      assert.strictEqual((yield* a.identify()).t, "READY")
      const b = yield* connect(gateway.connectUrl())
      yield* b.next()
      assert.strictEqual((yield* b.identify()).op, 9)
      yield* TestClock.adjust(499)
      assert.strictEqual((yield* b.identify()).op, 9)
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* b.identify()).t, "READY")
    }),
  )

  it.live("a spent session start limit: Invalid Session (false)", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 30_000,
        maxConcurrency: 4,
        sessionStartLimit: { total: 1000, remaining: 1 },
      })
      yield* identified(gateway, [0, 2])
      const second = yield* connect(gateway.connectUrl())
      yield* second.next()
      const answer = yield* second.identify({ shard: [1, 2] })
      assert.deepStrictEqual([answer.op, answer.d], [9, false])
      const rejected = Recording.only(yield* gateway.entries, "Rejected")
      assert.match(rejected[0]!.reason, /session start limit/)
    }),
  )

  it.live("GET /gateway/bot: url, shards, session_start_limit; each Identify uses one", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 30_000,
        shards: 3,
        maxConcurrency: 16,
        sessionStartLimit: { total: 1000, remaining: 10, resetAfter: "1 hour" },
      })
      const fetchBot = (path: string, auth = `Bot ${token}`) =>
        Effect.promise(() =>
          fetch(`${gateway.httpUrl}${path}`, { headers: { authorization: auth } }).then(async (res) => ({
            status: res.status,
            body: (await res.json()) as any,
          })),
        )
      const before = yield* fetchBot("/api/v10/gateway/bot")
      assert.strictEqual(before.status, 200)
      assert.strictEqual(before.body.url, gateway.url)
      assert.strictEqual(before.body.shards, 3)
      assert.strictEqual(before.body.session_start_limit.total, 1000)
      assert.strictEqual(before.body.session_start_limit.remaining, 10)
      assert.strictEqual(before.body.session_start_limit.max_concurrency, 16)
      assert.isAtMost(before.body.session_start_limit.reset_after, 3_600_000)
      assert.isAbove(before.body.session_start_limit.reset_after, 3_500_000)

      yield* identified(gateway, [0, 3])
      yield* identified(gateway, [1, 3])
      const after = yield* fetchBot("/gateway/bot")
      assert.strictEqual(after.body.session_start_limit.remaining, 8)

      assert.strictEqual((yield* fetchBot("/gateway/bot", "Bot wrong")).status, 401)
      assert.strictEqual((yield* fetchBot("/gateway")).body.url, gateway.url)
      assert.strictEqual((yield* fetchBot("/nothing")).status, 404)
      const http = Recording.only(yield* gateway.entries, "Http")
      assert.deepStrictEqual(
        http.map((entry) => entry.status),
        [200, 200, 401, 200, 404],
      )
    }),
  )

  it.live("dispatches to a session without a connection wait in its buffer", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const { client, sessionId } = yield* identified(gateway)
      yield* client.terminate
      yield* gateway.awaitEntry((e) => e._tag === "Closed")
      const seqs = yield* gateway.dispatch({ shard: 0 }, "MESSAGE_CREATE", {})
      assert.deepStrictEqual(seqs, [2])
      const sessions = yield* gateway.sessions
      assert.strictEqual(sessions[0]!.id, sessionId)
      assert.isUndefined(sessions[0]!.connection)
      assert.strictEqual(sessions[0]!.buffered, 2)
      assert.isTrue(sessions[0]!.resumable)
    }),
  )
})
