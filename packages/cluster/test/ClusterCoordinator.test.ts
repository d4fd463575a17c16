/**
 * The reshard coordinator (`internal/Coordinator.ts`): the periodic check of the recommended
 * count on the TestClock, and how a reshard's end shows in `ClusterMetrics` (against
 * PostgreSQL, on a registry of the test's own).
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { ClusterMetrics, ClusterReshard } from "@vigil/cluster"
import { IdentifyThrottle } from "@vigil/gateway"
import { Effect, Exit, Fiber, Layer, Metric } from "effect"
import { TestClock } from "effect/testing"
import * as Coordinator from "../src/internal/Coordinator.ts"
import * as Generation from "../src/internal/Generation.ts"
import { migrate } from "../src/internal/migrate.ts"
import * as TestDatabase from "./TestDatabase.ts"

const registry = Layer.effect(Metric.MetricRegistry)(Effect.sync(() => new Map()))

/** The value of one series (counter count, gauge value); undefined if absent. */
const read = (name: string, attributes: Record<string, string> = {}) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const found = snapshots.find(
      (s) => s.id === name && Object.entries(attributes).every(([k, v]) => s.attributes?.[k] === v),
    )
    if (found?.type === "Counter") return Number(found.state.count)
    if (found?.type === "Gauge") return Number(found.state.value)
    return undefined
  })

const idle = (count: number): Generation.State => ({
  count,
  to: undefined,
  phase: "idle",
  mode: undefined,
  waves: new Map(),
  reason: undefined,
  tookMillis: undefined,
})

describe("the periodic check", () => {
  it.effect(
    "every interval on the coordinator: reshards when the recommendation rises above the count, to a multiple; not while one runs",
    () =>
      Effect.gen(function* () {
        let state: Generation.State = idle(3)
        let recommended = 3
        let failing = false
        const asked: Array<number> = []
        const fiber = yield* Effect.forkChild(
          Coordinator.watch({
            interval: "8 hours",
            state: Effect.sync(() => state),
            recommended: Effect.suspend(() => (failing ? Effect.fail("down") : Effect.succeed(recommended))),
            reshard: (to) => Effect.sync(() => asked.push(to)),
          }),
        )
        yield* TestClock.adjust("8 hours")
        assert.deepStrictEqual(asked, [], "the recommendation did not rise")
        recommended = 4
        yield* TestClock.adjust("7 hours")
        assert.deepStrictEqual(asked, [], "before the interval")
        yield* TestClock.adjust("1 hour")
        assert.deepStrictEqual(asked, [6], "4 recommended over 3: the next multiple, 6")
        state = { ...idle(3), to: 6, phase: "running", mode: "waves" }
        yield* TestClock.adjust("8 hours")
        assert.deepStrictEqual(asked, [6], "a reshard is under way")
        state = idle(6)
        recommended = 13
        failing = true
        yield* TestClock.adjust("8 hours")
        assert.deepStrictEqual(asked, [6], "the check failed: nothing asked")
        failing = false
        yield* TestClock.adjust("8 hours")
        assert.deepStrictEqual(asked, [6, 18], "the check goes on after a failure")
        yield* Fiber.interrupt(fiber)
      }),
  )

  it("targetFor: a multiple of the count, at least twice it", () => {
    assert.deepStrictEqual(
      [
        [2, 3],
        [2, 4],
        [3, 4],
        [3, 10],
        [16, 32],
      ].map(([from, recommended]) => Coordinator.targetFor(from!, recommended!)),
      [4, 4, 6, 12, 32],
    )
  })
})

describe("the cluster's reshard metrics", () => {
  const throttle = Layer.effect(IdentifyThrottle.IdentifyThrottle)(
    IdentifyThrottle.make({ maxConcurrency: 1 }),
  )

  it.live(
    "completed, rolled back, refused: each counted once; the count and target gauges follow the state",
    () =>
      Effect.gen(function* () {
        const options = { parallelWaves: 1, waveAttempts: 1 }
        const counted = (outcome: string) => read(ClusterMetrics.names.reshards, { outcome })
        yield* migrate(Generation.migrations)
        yield* Generation.read(2)
        yield* Generation.begin(4)
        yield* ClusterMetrics.report(yield* Generation.read(2))
        assert.deepStrictEqual(
          [yield* read(ClusterMetrics.names.shardCount), yield* read(ClusterMetrics.names.reshardTarget)],
          [2, 4],
        )
        // Waves start one at a time; once both are done the reshard completes.
        yield* Coordinator.step(options)
        assert.deepStrictEqual(
          [...(yield* Generation.read(2)).waves].map(([, w]) => w.state),
          ["go", "pending"],
        )
        yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["go"], "done")
        yield* Generation.setWave({ from: 2, to: 4, shard: 1 }, ["pending"], "done")
        assert.isUndefined(yield* counted("completed"))
        yield* Coordinator.step(options)
        assert.strictEqual(yield* counted("completed"), 1)
        yield* Coordinator.step(options)
        assert.strictEqual(yield* counted("completed"), 1, "counted once")
        yield* ClusterMetrics.report(yield* Generation.read(2))
        assert.deepStrictEqual(
          [yield* read(ClusterMetrics.names.shardCount), yield* read(ClusterMetrics.names.reshardTarget)],
          [4, 0],
        )

        // 4 → 6 (a whole-set wave) fails its only attempt: rolled back.
        yield* Generation.begin(6)
        yield* Generation.setWave({ from: 4, to: 6, shard: 0 }, ["pending"], "running")
        yield* Generation.setWave({ from: 4, to: 6, shard: 0 }, ["running"], "failed", "identify refused")
        yield* Coordinator.step(options)
        assert.strictEqual(yield* counted("rolled-back"), 1)
        assert.strictEqual((yield* Generation.read(2)).phase, "failed")

        const refused = yield* Effect.exit(ClusterReshard.reshard(4))
        assert.isTrue(Exit.isFailure(refused))
        assert.strictEqual(yield* counted("refused"), 1)
      }).pipe(Effect.provide(Layer.mergeAll(TestDatabase.layer, throttle, registry))),
  )
})

describe("the README's metric table", () => {
  it("lists exactly the metrics @vigil/cluster exports", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8")
    const rows = readme.split("\n").filter((line) => line.startsWith("| `vigil_cluster_"))
    const listed = new Set(rows.flatMap((row) => row.split(" | ")[0]!.match(/vigil_[a-z_]+/g) ?? []))
    assert.deepStrictEqual([...listed].sort(), Object.values(ClusterMetrics.names).sort())
  })
})
