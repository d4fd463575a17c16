/**
 * The session store as a shard uses it: every call bounded in time. A store that stops
 * answering (a hung file system, a lost database) costs at worst an identify, never a shard
 * that cannot start or a shutdown that never completes.
 */
import { Duration, Effect, Option } from "effect"
import { SessionStoreTimeout } from "../GatewayError.ts"
import type { SessionStoreService, ShardKey, StoredSession } from "../SessionStore.ts"

export const defaultTimeout = Duration.seconds(5)

export interface BoundedStore {
  /** None when the store has nothing, or did not answer in time. */
  readonly load: Effect.Effect<Option.Option<StoredSession>>
  readonly save: (session: StoredSession) => Effect.Effect<void>
  readonly clear: Effect.Effect<void>
}

export const make = (
  store: SessionStoreService,
  shard: ShardKey,
  timeout: Duration.Input = defaultTimeout,
): BoundedStore => {
  const timeoutMillis = Duration.toMillis(timeout)
  // Interruptible even inside a finalizer (shutdown saves there), so the timeout can win.
  const bound = <A>(operation: SessionStoreTimeout["operation"], call: Effect.Effect<A>, fallback: A) =>
    Effect.interruptible(call).pipe(
      Effect.timeoutOrElse({
        duration: timeoutMillis,
        orElse: () =>
          Effect.as(
            Effect.logWarning(
              new SessionStoreTimeout({ operation, shardId: shard[0], timeoutMillis }).message,
            ),
            fallback,
          ),
      }),
    )
  // Built when called (rarely), not held for the shard's life.
  return {
    load: Effect.suspend(() => bound("load", store.load(shard), Option.none())),
    save: (session) => bound("save", store.save(shard, session), undefined),
    clear: Effect.suspend(() => bound("clear", store.clear(shard), undefined)),
  }
}
