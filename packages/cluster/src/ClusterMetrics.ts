/**
 * The cluster's shard count and its reshards as metrics, on `effect`'s `Metric` registry (the
 * one `@vigil/gateway`'s `Metrics` uses: whatever exports those exports these). Every runner
 * reports the count it last read; the reshards' ends are counted once, by the coordinator's
 * runner (refusals by the process that asked).
 */
import { Effect, Metric } from "effect"

/** The metric names, as exported (the README lists the same). */
export const names = {
  reshards: "vigil_cluster_reshards_total",
  shardCount: "vigil_cluster_shard_count",
  reshardTarget: "vigil_cluster_reshard_target",
} as const

/** How a cluster reshard ended; one `vigil_cluster_reshards_total` series each. */
export type ReshardOutcome = "completed" | "rolled-back" | "partial" | "refused"

/** Cluster reshards ended, by outcome. */
export const reshards = (outcome: ReshardOutcome) =>
  Metric.counter(names.reshards, {
    description: "cluster reshards ended, by outcome",
    attributes: { outcome },
    incremental: true,
  })

/** The count serving the cluster's guilds, as this runner last read it. */
export const shardCount = Metric.gauge(names.shardCount, {
  description: "the cluster's serving shard count",
})

/** The count a reshard under way (or stopped partway) moves to; 0 when none. */
export const reshardTarget = Metric.gauge(names.reshardTarget, {
  description: "the shard count a cluster reshard under way moves to (0: none)",
})

/** Sets the gauges from the cluster's state as a runner read it. */
export const report = (state: {
  readonly count: number
  readonly to: number | undefined
}): Effect.Effect<void> =>
  Effect.andThen(Metric.update(shardCount, state.count), Metric.update(reshardTarget, state.to ?? 0))
