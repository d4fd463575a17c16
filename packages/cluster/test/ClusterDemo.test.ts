/**
 * `npm run demo:cluster` end to end, as its user runs it (three runner processes, PostgreSQL,
 * the FakeGateway): its report's claims are the assertions.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ClusterDemo from "../demo/ClusterDemo.ts"

describe("demo:cluster", () => {
  it.live(
    "three runners, a kill -9 and a restart under traffic: nothing lost, no shard twice, commands from anywhere",
    () =>
      Effect.gen(function* () {
        const lines: Array<string> = []
        const summary = yield* ClusterDemo.run(
          { databaseUrl: process.env["DATABASE_URL"] ?? "", shards: 4 },
          (line) => void lines.push(line),
        )
        const text = lines.join("\n")
        assert.isTrue(summary.ok, text)
        assert.isAbove(summary.sent, 200, text)
        assert.strictEqual(summary.lost, 0, text)
        assert.strictEqual(summary.delivered, summary.sent, text)
        assert.strictEqual(summary.unexplainedDuplicates, 0, text)
        assert.isAtMost(summary.maxSocketsPerShard, 1, text)
        assert.strictEqual(summary.commandsDelivered, 4, text)
        // Lock expiry 3 s: the goal is a shard back READY within 10 s of its runner's death.
        assert.isAbove(summary.failoverMillis, 0, text)
        assert.isBelow(summary.failoverMillis, 10_000, text)
        assert.isBelow(summary.handoffMillis, 10_000, text)
        // Every move resumed: only the first start of each shard identified.
        assert.strictEqual(summary.identifies, 4, text)
        assert.include(text, "ok: nothing lost, no shard ran twice")
      }),
    120_000,
  )
})
