/**
 * 16 shards with `max_concurrency` 4 started on three runner processes at once: identifies are
 * granted on PostgreSQL's clock across the cluster, one per `shard_id % 4` bucket per 5 s,
 * whichever runner asks. The FakeGateway enforces the limit (it rejects an identify that comes
 * too soon for its bucket), so a runner that identified on its own say would show up as a
 * rejection; every shard comes up with one identify, never two sockets.
 */
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Recording from "@vigil/testing/Recording"
import { Effect, Redacted } from "effect"
import * as RunnerProcess from "../demo/RunnerProcess.ts"
import * as TestDatabase from "./TestDatabase.ts"

const token = "cluster-identify-test-token"
const shards = 16
const maxConcurrency = 4

describe("three runner processes starting at once", () => {
  it.live(
    "16 shards, max_concurrency 4: at most one identify per bucket per 5 s across the cluster",
    () =>
      Effect.gen(function* () {
        // Discord's window, counted from arrival: the throttle's 250 ms margin covers the trip's jitter.
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 1_000,
          shards,
          maxConcurrency,
          identifyWindow: "5000 millis",
        })
        const { url } = yield* TestDatabase.TestDatabase
        const env = {
          DATABASE_URL: Redacted.value(url),
          GATEWAY_URL: gateway.url,
          TOKEN: token,
          SHARDS: String(shards),
          MAX_CONCURRENCY: String(maxConcurrency),
        }
        const runners = yield* Effect.forEach(
          ["a", "b", "c"],
          (name) =>
            Effect.flatMap(RunnerProcess.freePort, (port) => RunnerProcess.start({ name, port, env })),
          { concurrency: "unbounded" },
        )
        yield* eventually(
          Effect.map(gateway.connections, (all) => {
            const open = all.filter((c) => c.state === "open" && c.authenticated)
            return new Set(open.map((c) => c.shard?.[0])).size === shards
          }),
          "every shard up",
          "60 seconds",
        ).pipe(Effect.tapCause(() => Effect.sync(() => console.error(runners.map((r) => r.stderr())))))

        const entries = yield* gateway.entries
        assert.deepStrictEqual(
          Recording.only(entries, "Rejected").map((r) => r.reason),
          [],
          "an identify came too soon for its bucket",
        )
        const identified = Recording.only(entries, "Identified")
        assert.strictEqual(identified.length, shards, "a shard identified twice")
        for (let bucket = 0; bucket < maxConcurrency; bucket++) {
          const at = identified.filter((e) => e.shard[0] % maxConcurrency === bucket).map((e) => e.at)
          for (let i = 1; i < at.length; i++) assert.isAtLeast(at[i]! - at[i - 1]!, 4_700, `bucket ${bucket}`)
        }
        // At most 4 in any 4.7 s.
        for (const first of identified) {
          assert.isAtMost(
            identified.filter((e) => e.at >= first.at && e.at < first.at + 4_700).length,
            maxConcurrency,
          )
        }
        assert.isAtMost(
          Math.max(...Recording.maxOpenPerShard(entries).values()),
          1,
          "two sockets for one shard",
        )
        // The runners were competing: a second one was in the cluster before the last identify.
        const joins = runners
          .map((r) => r.lines.find((line) => line.text.startsWith("joined"))?.at ?? Number.POSITIVE_INFINITY)
          .sort((x, y) => x - y)
        assert.isBelow(joins[1]!, identified.at(-1)!.at)
      }).pipe(Effect.provide(TestDatabase.fresh)),
    120_000,
  )
})
