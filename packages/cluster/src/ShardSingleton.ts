/**
 * One Discord shard as one `effect/cluster` Singleton: the cluster places it on exactly one
 * runner at a time and starts it elsewhere when that runner dies or leaves. The shard resumes
 * there from the `SessionStore` (on PostgreSQL: `PgSessionStore`) instead of identifying.
 *
 * A singleton whose effect ends is never restarted, and the engine logs nothing, so the effect
 * here never ends: a shard that stops for good (bad token, disallowed intents, budget spent)
 * logs why and keeps its place, stopped, until its runner goes.
 */
import type { IdentifyThrottle, SessionStore, Transport } from "@vigil/gateway"
import { Shard } from "@vigil/gateway"
import { Effect, Layer, type Scope } from "effect"
import { type Sharding, Singleton } from "effect/cluster"

/** The singleton's name: `vigil-shard-<id>-of-<count>`. */
export const nameOf = ([id, count]: SessionStore.ShardKey): string => `vigil-shard-${id}-of-${count}`

export interface ShardSingletonOptions<E, R> {
  readonly shards: ReadonlyArray<SessionStore.ShardKey>
  readonly config: Omit<Shard.ShardConfig, "shard">
  /** What the app does with a shard where it runs (consume its events, ...). */
  readonly run: (shard: Shard.Shard) => Effect.Effect<void, E, R>
}

type Requires<R> =
  | Sharding.Sharding
  | Transport.GatewayTransport
  | SessionStore.SessionStore
  | IdentifyThrottle.IdentifyThrottle
  | Exclude<R, Scope.Scope>

export const layer = <E, R>(options: ShardSingletonOptions<E, R>): Layer.Layer<never, never, Requires<R>> =>
  options.shards
    .map((key) =>
      Singleton.make(
        nameOf(key),
        Effect.gen(function* () {
          const shard = yield* Shard.make({ ...options.config, shard: key })
          yield* Effect.forkScoped(
            options
              .run(shard)
              .pipe(Effect.catchCause((cause) => Effect.logError("the shard's consumer failed", cause))),
          )
          yield* shard.await.pipe(
            Effect.catch((error) => Effect.logError(`shard stopped for good: ${error.message}`)),
          )
          yield* Effect.never
        }).pipe(Effect.scoped, Effect.annotateLogs({ package: "@vigil/cluster", shard: nameOf(key) })),
      ),
    )
    // (`Layer.mergeAll` takes no spread array.)
    .reduce<Layer.Layer<never, never, Requires<R>>>((all, one) => Layer.merge(all, one), Layer.empty)
