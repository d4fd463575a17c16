/**
 * PostgreSQL gone for every runner at once, three runner processes, traffic on every shard:
 * through a TcpProxy in front of the test server (each connection reset, new ones refused for
 * a while), and a real restart of a server of the test's own (`pg_ctl stop -m fast`, then
 * start). Every runner fences itself (no lease renewal) and closes its sockets; once the
 * database is back the cluster retakes its shards and each RESUMEs: no shard is lost for
 * good, none ever has two sockets, no event is lost.
 */
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Recording from "@vigil/testing/Recording"
import * as TcpProxy from "@vigil/testing/TcpProxy"
import { Effect, Redacted } from "effect"
import * as RunnerProcess from "../demo/RunnerProcess.ts"
import * as PrivatePostgres from "./PrivatePostgres.ts"
import * as TestDatabase from "./TestDatabase.ts"

const token = "database-outage-test-token"
const shards = 3

/** How the database goes away for every runner at once, and comes back. */
interface Outage {
  /** What the runners connect to. */
  readonly url: string
  readonly down: Effect.Effect<unknown>
  readonly up: Effect.Effect<unknown>
}

/** Every shard comes back (resumed) after the outage, never two sockets, nothing lost. */
const survives = <E, R>(makeOutage: Effect.Effect<Outage, E, R>) =>
  Effect.gen(function* () {
    const gateway = yield* FakeGateway.make({
      token,
      heartbeatInterval: 1_000,
      shards,
      maxConcurrency: shards,
    })
    const database = yield* makeOutage
    const env = {
      DATABASE_URL: database.url,
      GATEWAY_URL: gateway.url,
      TOKEN: token,
      SHARDS: String(shards),
      MAX_CONCURRENCY: String(shards),
    }
    const runners = yield* Effect.forEach(
      ["a", "b", "c"],
      (name) => Effect.flatMap(RunnerProcess.freePort, (port) => RunnerProcess.start({ name, port, env })),
      { concurrency: "unbounded" },
    )
    const everyShardUp = RunnerProcess.everyShardUp(gateway, shards)
    // Settled: every shard up and none started anywhere for 2 s (a late joiner pulls some over).
    const starts = () => runners.reduce((n, r) => n + r.starts().length, 0)
    let counted = -1
    let since = Date.now()
    yield* eventually(
      Effect.gen(function* () {
        if (!(yield* everyShardUp) || starts() !== counted) {
          counted = starts()
          since = Date.now()
        }
        return Date.now() - since >= 2_000
      }),
      "the placement settled",
      "40 seconds",
    )

    const traffic = yield* RunnerProcess.trafficOnEveryShard(gateway, shards, 25)
    yield* Effect.sleep("1 second")
    const before = (yield* gateway.connections).filter((c) => c.state === "open").map((c) => c.id)

    yield* database.down
    // The engine stops its shards once its lock connection resets, else fencing does 2 s after
    // the last lease renewal (the runner's fast timings): every socket closed either way.
    const closed = Effect.map(gateway.entries, (entries) =>
      Recording.only(entries, "Closed").filter((e) => before.includes(e.connection)),
    )
    yield* eventually(
      Effect.map(closed, (all) => all.length === before.length),
      "every runner closed its sockets",
      "10 seconds",
    )
    yield* Effect.sleep("1 second")
    yield* database.up
    const backAt = Date.now()
    yield* eventually(everyShardUp, "every shard up again", "30 seconds")
    const recovery = Date.now() - backAt
    yield* Effect.sleep("1 second")
    yield* traffic.stop
    const sent = traffic.sent.map(RunnerProcess.eventKey)

    const handled = () => RunnerProcess.handledKeys(runners)
    yield* eventually(
      () => {
        const seen = new Set(handled())
        return sent.every((event) => seen.has(event))
      },
      "every event handled",
      "20 seconds",
    ).pipe(Effect.ignoreCause)
    const seen = new Set(handled())
    assert.deepStrictEqual(
      sent.filter((event) => !seen.has(event)),
      [],
      "events lost",
    )
    const entries = yield* gateway.entries
    assert.strictEqual(before.length, shards)
    assert.isAtMost(Math.max(...Recording.maxOpenPerShard(entries).values()), 1, "two sockets for one shard")
    assert.strictEqual(Recording.identifyCount(entries), shards, "a shard identified instead of resuming")
    // Measured ~2–4 s (the engine retakes its shards on its poll, 0.5 s here).
    assert.isBelow(recovery, 20_000)
  })

/** A TcpProxy in front of the test's database: connections reset, new ones refused, then let through. */
const proxied = Effect.gen(function* () {
  const { url } = yield* TestDatabase.TestDatabase
  const server = new URL(Redacted.value(url))
  const proxy = yield* TcpProxy.make({ target: { host: server.hostname, port: Number(server.port || 5432) } })
  const through = new URL(server)
  through.hostname = "127.0.0.1"
  through.port = String(proxy.port)
  return {
    url: through.toString(),
    down: Effect.andThen(proxy.refuse(true), proxy.cut),
    up: proxy.refuse(false),
  } satisfies Outage
})

describe("three runner processes", () => {
  it.live(
    "the database down for 3 s: every shard comes back (resumed), never two sockets, nothing lost",
    () => survives(proxied).pipe(Effect.provide(TestDatabase.fresh)),
    120_000,
  )

  it.live.skipIf(!PrivatePostgres.available)(
    "a PostgreSQL server of their own stopped and started again: every shard comes back (resumed), never two sockets, nothing lost",
    () => survives(PrivatePostgres.restartable),
    120_000,
  )
})
