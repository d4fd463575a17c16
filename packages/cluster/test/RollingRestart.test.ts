/**
 * A deploy: three runner processes (`demo/runner.ts`) restarted one by one (SIGTERM, then
 * started again on the same address) under traffic on every shard. Each leave hands its
 * shards over gracefully and each return may pull some back (a rebalance, graceful too):
 * every event sent is handled exactly once across all the runners, no shard ever has two
 * sockets, and every move RESUMEs (one identify per shard, ever).
 */
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Recording from "@vigil/testing/Recording"
import { Effect, Redacted } from "effect"
import * as RunnerProcess from "../demo/RunnerProcess.ts"
import * as TestDatabase from "./TestDatabase.ts"

const token = "rolling-restart-test-token"
const shards = 3

describe("three runner processes", () => {
  it.live(
    "a rolling restart under traffic: every event handled exactly once, never two sockets for a shard",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 1_000,
          shards,
          maxConcurrency: shards,
        })
        const { url } = yield* TestDatabase.TestDatabase
        const env = {
          DATABASE_URL: Redacted.value(url),
          GATEWAY_URL: gateway.url,
          TOKEN: token,
          SHARDS: String(shards),
          MAX_CONCURRENCY: String(shards),
          HANDLE_MILLIS: "2",
        }
        const runners: Array<RunnerProcess.RunnerProcess> = []
        const start = (name: string, port: number) =>
          Effect.tap(RunnerProcess.start({ name, port, env }), (runner) =>
            Effect.sync(() => runners.push(runner)),
          )
        for (const name of ["a", "b", "c"]) yield* start(name, yield* RunnerProcess.freePort)
        const everyShardUp = RunnerProcess.everyShardUp(gateway, shards)
        yield* eventually(() => runners.every((r) => r.joined()), "the runners joined", "40 seconds")
        yield* eventually(everyShardUp, "every shard up", "30 seconds")

        const traffic = yield* RunnerProcess.trafficOnEveryShard(gateway, shards, 25)
        yield* Effect.sleep("1 second")

        for (const leaving of runners.slice(0, 3)) {
          leaving.child.kill("SIGTERM")
          yield* eventually(leaving.exited, `runner ${leaving.name} exited`, "20 seconds")
          const again = yield* start(leaving.name, leaving.port)
          yield* eventually(again.joined, `runner ${leaving.name} joined again`, "30 seconds")
          yield* eventually(everyShardUp, "every shard up", "20 seconds")
        }
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
        const all = handled()
        const seen = new Set(all)
        assert.isAbove(sent.length, 200)
        assert.deepStrictEqual(
          sent.filter((event) => !seen.has(event)),
          [],
          "events lost",
        )
        assert.deepStrictEqual(
          all.filter((event, i) => all.indexOf(event) !== i),
          [],
          "events handled twice",
        )
        assert.strictEqual(all.length, sent.length)
        const entries = yield* gateway.entries
        assert.isAtMost(
          Math.max(...Recording.maxOpenPerShard(entries).values()),
          1,
          "two sockets for one shard",
        )
        assert.strictEqual(Recording.identifyCount(entries), shards, "a move identified instead of resuming")
        assert.isAtLeast(Recording.resumeCount(entries), 3, "the shards did not move")
      }).pipe(Effect.provide(TestDatabase.fresh)),
    120_000,
  )
})
