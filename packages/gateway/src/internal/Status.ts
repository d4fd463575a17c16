/**
 * The shard's status as its app sees it: one `SubscriptionRef` that every state change goes
 * through, so the state gauge follows it, and the health snapshot built on it.
 */
import { Effect, SubscriptionRef } from "effect"
import type * as Metrics from "../Metrics.ts"
import type { ShardHealth, ShardState, ShardStatus } from "../Shard.ts"
import type { Delivery } from "./Delivery.ts"

export interface Status {
  readonly ref: SubscriptionRef.SubscriptionRef<ShardStatus>
  readonly update: (f: (s: ShardStatus) => ShardStatus) => Effect.Effect<void>
  readonly setState: (state: ShardState) => Effect.Effect<void>
  /** Status, delivery figures and the commands waiting to be sent, read together. */
  readonly health: (delivery: Delivery, queuedCommands: Effect.Effect<number>) => Effect.Effect<ShardHealth>
}

export const make = Effect.fnUntraced(function* (
  shard: readonly [number, number],
  sessionId: string | undefined,
  metrics: Metrics.ShardMetrics,
  onChange?: ((next: ShardStatus, previous: ShardStatus) => void) | undefined,
) {
  const ref = yield* SubscriptionRef.make<ShardStatus>({
    shard,
    state: { _tag: "Connecting" },
    latency: undefined,
    sessionId,
    connections: 0,
    identifies: 0,
    resumes: 0,
    lastError: undefined,
  })
  const update = (f: (s: ShardStatus) => ShardStatus) =>
    SubscriptionRef.update(ref, (s) => {
      const next = f(s)
      if (next.state !== s.state) metrics.state(next.state._tag)
      onChange?.(next, s)
      return next
    })
  return {
    ref,
    update,
    setState: (state) => update((s) => ({ ...s, state })),
    health: (delivery, queuedCommands) =>
      Effect.gen(function* () {
        const s = yield* SubscriptionRef.get(ref)
        const queued = yield* queuedCommands
        return { ...s, ...delivery.stats(), queuedCommands: queued }
      }),
  } satisfies Status
})
