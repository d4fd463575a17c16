/**
 * The whole client over real sockets: a ShardManager reads GET /gateway/bot from the fake
 * gateway on 127.0.0.1, runs its shards through the ws transport, and survives faults
 * the fake injects. Real time, short heartbeat intervals.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Protocol, SessionStore, ShardManager } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Invariants from "@vigil/testing/Invariants"
import * as Recording from "@vigil/testing/Recording"
import { Effect, Layer, Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

const token = "live-shard-test-token"
const interval = 250

const sockets = Invariants.countSockets(NodeTransport.make())
const client = Layer.mergeAll(sockets.layer, SessionStore.SessionStore.layerMemory, FetchHttpClient.layer)

const startManager = (gateway: FakeGateway.FakeGatewayService) =>
  Effect.gen(function* () {
    const manager = yield* ShardManager.make({
      token: Redacted.make(token),
      intents: 513,
      apiBaseUrl: gateway.httpUrl,
    })
    const seen = new Map<number, Array<Protocol.Dispatch>>()
    yield* Effect.forkScoped(
      Stream.runForEach(manager.events, (e) =>
        Effect.sync(() => {
          const list = seen.get(e.shardId) ?? []
          list.push(e.dispatch)
          seen.set(e.shardId, list)
        }),
      ),
    )
    return { manager, seen }
  })

const seqs = (list: ReadonlyArray<Protocol.Dispatch> | undefined) =>
  (list ?? []).map((d) => `${d.type}#${d.seq}`)

describe("ShardManager over WebSocket against FakeGateway", () => {
  it.live("reads /gateway/bot, runs the recommended shards, resumes a zombie with nothing lost", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: interval,
        shards: 2,
        maxConcurrency: 2,
      })
      const { manager, seen } = yield* startManager(gateway)
      assert.strictEqual(manager.shardCount, 2)
      yield* eventually(() => seqs(seen.get(0)).length > 0 && seqs(seen.get(1)).length > 0, "both READY")
      yield* gateway.emit({ shard: 1 }, { count: 20 })
      yield* gateway.stopAcks({ shard: 1 })
      yield* gateway.emit({ shard: 1 }, { count: 5 })
      // the zombie is detected, the client closes with a resumable code and resumes
      yield* eventually(
        Effect.map(gateway.entries, (e) => Recording.resumeCount(e) === 1),
        "resume",
      )
      yield* gateway.emit({ shard: 1 }, { count: 5 })
      yield* eventually(() => seqs(seen.get(1)).length >= 32, "all events on shard 1")
      const entries = yield* gateway.entries
      const closes = Recording.clientCloses(entries)
      assert.isTrue(closes.length >= 1)
      assert.isTrue(closes.every((c) => c.code !== 1000 && c.code !== 1001))
      const sequences = seen.get(1)!.map((d) => d.seq) // RESUMED has its own sequence too
      assert.deepStrictEqual(
        sequences,
        Array.from({ length: sequences.length }, (_, i) => i + 1),
        "in order, no gap, no repeat",
      )
      assert.strictEqual(Recording.identifyCount(entries), 2)
      // One socket per shard as the client holds them (the server may see the old close late).
      assert.isAtMost(sockets.max(), 2, "never more sockets than shards")
    }).pipe(Effect.provide(client)),
  )

  it.live("a server restart that keeps sessions resumes; one that loses them identifies afresh", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: interval })
      const { seen } = yield* startManager(gateway)
      yield* eventually(() => seqs(seen.get(0)).length > 0, "READY")
      yield* gateway.restart({ sessions: "keep" })
      yield* eventually(
        Effect.map(gateway.entries, (e) => Recording.resumeCount(e) === 1),
        "resume",
      )
      yield* gateway.restart({ sessions: "drop", downtime: 100 })
      yield* eventually(
        Effect.map(gateway.entries, (e) => Recording.identifyCount(e) === 2),
        "identify after lost sessions",
        "15 seconds", // Invalid Session (false) waits 1–5 s, and the identify window is 5 s
      )
      yield* gateway.emit({ shard: 0 }, { count: 3 })
      yield* eventually(
        () => seqs(seen.get(0)).filter((s) => s.startsWith("MESSAGE_CREATE")).length === 3,
        "events",
      )
      assert.strictEqual(seqs(seen.get(0)).filter((s) => s.startsWith("READY")).length, 2)
    }).pipe(Effect.provide(client)),
  )

  it.live(
    "a wrong token is a typed AuthenticationFailed from /gateway/bot's sibling: the gateway close",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: interval })
        const manager = yield* ShardManager.make({
          token: Redacted.make("not-the-token"),
          intents: 513,
          gatewayBot: {
            url: gateway.url,
            shards: 1,
            session_start_limit: { total: 1000, remaining: 1000, reset_after: 1000, max_concurrency: 1 },
          },
        })
        const error = yield* Effect.flip(manager.await)
        assert.strictEqual(error._tag, "AuthenticationFailed")
        assert.notInclude(error.message, "not-the-token")
      }).pipe(Effect.provide(client)),
  )

  it.live("GET /gateway/bot with a bad token: AuthenticationFailed (401) without the token", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: interval })
      const error = yield* Effect.flip(
        ShardManager.make({
          token: Redacted.make("wrong-token-xyz"),
          intents: 1,
          apiBaseUrl: gateway.httpUrl,
        }),
      )
      assert.strictEqual(error._tag, "AuthenticationFailed")
      if (error._tag === "AuthenticationFailed") assert.strictEqual(error.code, 401)
      assert.notInclude(error.message, "wrong-token-xyz")
    }).pipe(Effect.provide(client)),
  )
})
