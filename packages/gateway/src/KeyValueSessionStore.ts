/**
 * A `SessionStore` on Effect's `KeyValueStore`, so sessions outlive the process: a restarted
 * bot resumes (free) instead of identifying (1000 a day). One key per shard id and shard
 * count, the value the session as JSON. Any `KeyValueStore` will do: the file system
 * (`NodeSessionStore.layerFileSystem` in `@vigil/gateway-node`), SQL, browser storage.
 *
 * A value that cannot be read or is not a session (truncated, corrupt, written by something
 * else) is a miss, logged as a `SessionStoreError`: the shard identifies, it never crashes.
 */
import { Effect, Layer, Option, Schema } from "effect"
import { KeyValueStore } from "effect/persistence"
import { SessionStoreError } from "./GatewayError.ts"
import { SessionStore, type SessionStoreService, type ShardKey } from "./SessionStore.ts"

const StoredSession = Schema.Struct({
  sessionId: Schema.String,
  sequence: Schema.NullOr(Schema.Int),
  resumeUrl: Schema.String,
})

/** The key of a shard's session, e.g. `vigil-shard-3-of-16`. */
export const keyOf = ([id, count]: ShardKey): string => `vigil-shard-${id}-of-${count}`

export const make = Effect.fnUntraced(function* () {
  const store = KeyValueStore.toSchemaStore(yield* KeyValueStore.KeyValueStore, StoredSession)
  const logged =
    (operation: SessionStoreError["operation"], shard: ShardKey) =>
    (error: KeyValueStore.KeyValueStoreError | Schema.SchemaError) =>
      Effect.logWarning(
        new SessionStoreError({
          operation,
          shard,
          reason:
            error._tag === "SchemaError"
              ? "the stored value is not a session (corrupt or foreign)"
              : error.message,
        }).message,
      )
  return {
    load: (shard) =>
      store
        .get(keyOf(shard))
        .pipe(Effect.catch((error) => Effect.as(logged("load", shard)(error), Option.none()))),
    save: (shard, session) => store.set(keyOf(shard), session).pipe(Effect.catch(logged("save", shard))),
    clear: (shard) => store.remove(keyOf(shard)).pipe(Effect.catch(logged("clear", shard))),
  } satisfies SessionStoreService
})

/** The session store over whichever `KeyValueStore` the context holds. */
export const layer: Layer.Layer<SessionStore, never, KeyValueStore.KeyValueStore> = Layer.effect(
  SessionStore,
)(make())
