/**
 * The shard's status as its app sees it: one `SubscriptionRef` that every state change goes
 * through, so the state gauge follows it, and the health snapshot built on it.
 */
import { Effect, PubSub, SubscriptionRef } from "effect"
import type * as Metrics from "../Metrics.ts"
import type { ShardHealth, ShardState, ShardStatus } from "../Shard.ts"
import type { Delivery } from "./Delivery.ts"

export interface Status {
  readonly ref: SubscriptionRef.SubscriptionRef<ShardStatus>
  readonly update: (f: (s: ShardStatus) => ShardStatus) => Effect.Effect<void>
  /** `update`, as a plain call. */
  readonly updateUnsafe: (f: (s: ShardStatus) => ShardStatus) => void
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
  // Every update is a synchronous function of the current value, so none can interleave
  // with another: the ref's semaphore (for effectful updates) is not needed, and each update
  // is one step (a latency is recorded on every heartbeat ACK).
  const updateUnsafe = (f: (s: ShardStatus) => ShardStatus) => {
    const previous = ref.value
    const next = f(previous)
    if (next.state !== previous.state) metrics.state(next.state._tag)
    ref.value = next
    PubSub.publishUnsafe(ref.pubsub, next)
    onChange?.(next, previous)
  }
  const update = (f: (s: ShardStatus) => ShardStatus) => Effect.sync(() => updateUnsafe(f))
  return {
    ref,
    update,
    updateUnsafe,
    setState: (state) => update((s) => ({ ...s, state })),
    health: (delivery, queuedCommands) =>
      Effect.gen(function* () {
        const s = yield* SubscriptionRef.get(ref)
        const queued = yield* queuedCommands
        return { ...s, ...delivery.stats(), queuedCommands: queued }
      }),
  } satisfies Status
})
