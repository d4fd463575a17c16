import { EventKey, type ShardSingleton } from "@vigil/cluster"
import type { Shard } from "@vigil/gateway"
import { Effect, Stream } from "effect"

/** Where the app keeps its work and, with it, the last event it handled per shard. */
export interface AppStore {
  readonly lastHandled: (shardId: number) => Effect.Effect<EventKey.KeyedEvent | undefined>
  /** The work for `event` and its key, written in one transaction. */
  readonly handleAndRemember: (event: EventKey.KeyedEvent) => Effect.Effect<void>
}

// ShardSingleton's (or ClusterRunner's) `run`: each event handled once, even across a crash.
export const run = (store: AppStore) => (_shard: Shard.Shard, running: ShardSingleton.Running) =>
  Stream.runForEach(running.events, (event) =>
    Effect.gen(function* () {
      const last = yield* store.lastHandled(event.shardId)
      if (!EventKey.isNew(event, last)) return // handed over again after a crash: done already
      yield* store.handleAndRemember(event)
    }),
  )
