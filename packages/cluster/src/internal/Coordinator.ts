/**
 * The reshard coordinator's work, run by one singleton in the cluster: `step` drives a running
 * reshard's waves (go, retry, finish) and counts how it ended (`ClusterMetrics`); `watch` is
 * the optional periodic check of the recommended count (`resharding.checkEvery`).
 */
import { Duration, Effect, Metric, type Schema } from "effect"
import type { SqlClient, SqlError } from "effect/sql"
import * as ClusterMetrics from "../ClusterMetrics.ts"
import * as Generation from "./Generation.ts"

export interface StepOptions {
  /** Waves under way at once. */
  readonly parallelWaves: number
  /** Attempts of one wave before the reshard stops. */
  readonly waveAttempts: number
}

/** One look at the reshard under way: finish it, retry or give up a failed wave, or start the next ones. */
export const step = (
  options: StepOptions,
): Effect.Effect<void, SqlError.SqlError | Schema.SchemaError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const now = yield* Generation.readIfAny
    if (now === undefined || now.phase !== "running" || now.to === undefined) return
    const from = now.count
    const to = now.to
    const waves = [...now.waves].sort(([a], [b]) => a - b)
    if (waves.length > 0 && waves.every(([, w]) => w.state === "done")) {
      yield* Generation.finish(from, to, "completed")
      yield* Metric.update(ClusterMetrics.reshards("completed"), 1)
      yield* Effect.logInfo(`resharded ${from} → ${to}`)
      return
    }
    const failed = waves.find(([, w]) => w.state === "failed")
    if (failed !== undefined) {
      const [shard, w] = failed
      if (w.attempts >= options.waveAttempts) {
        const reason = `wave ${shard}/${from} failed ${w.attempts} time(s): ${w.reason ?? "unknown"}`
        yield* Generation.finish(from, to, "failed", reason)
        const after = yield* Generation.readIfAny
        yield* Metric.update(
          ClusterMetrics.reshards(after?.phase === "partial" ? "partial" : "rolled-back"),
          1,
        )
        yield* Effect.logWarning(`reshard ${from} → ${to} stopped: ${reason}`)
      } else {
        yield* Generation.setWave({ from, to, shard }, ["failed"], "go")
      }
      return
    }
    const active = waves.filter(
      ([, w]) => w.state === "go" || w.state === "running" || w.state === "handed",
    ).length
    for (const [shard] of waves
      .filter(([, w]) => w.state === "pending")
      .slice(0, options.parallelWaves - active)) {
      yield* Generation.setWave({ from, to, shard }, ["pending"], "go")
    }
  })

/**
 * The count to reshard to when Discord recommends `recommended` shards and `from` serve: a
 * multiple of `from` (waves: k extra connections at a time, on whichever runners, rather than
 * the whole set in one process), at least twice `from`.
 */
export const targetFor = (from: number, recommended: number): number =>
  Math.max(2 * from, Math.ceil(recommended / from) * from)

/**
 * Every `interval`: when no reshard is under way and `recommended` is above the serving count,
 * reshards to `targetFor` it. A failed check (or reshard) is logged; the next comes an
 * interval later. Never ends.
 */
export const watch = <E1, E2, E3, R>(options: {
  readonly interval: Duration.Input
  readonly state: Effect.Effect<Generation.State | undefined, E1, R>
  readonly recommended: Effect.Effect<number, E2, R>
  readonly reshard: (to: number) => Effect.Effect<unknown, E3, R>
}): Effect.Effect<never, never, R> => {
  const interval = Duration.fromInputUnsafe(options.interval)
  const check = Effect.gen(function* () {
    const now = yield* options.state
    if (now === undefined || now.phase === "running" || now.phase === "partial") return
    const recommended = yield* options.recommended
    if (recommended <= now.count) return
    const to = targetFor(now.count, recommended)
    yield* Effect.logInfo(
      `/gateway/bot recommends ${recommended} shards (serving ${now.count}): resharding the cluster to ${to}`,
    )
    yield* options.reshard(to)
  })
  return Effect.forever(
    Effect.andThen(
      Effect.sleep(interval),
      check.pipe(
        Effect.catchCause((cause) => Effect.logWarning("the periodic shard count check failed", cause)),
      ),
    ),
  )
}
