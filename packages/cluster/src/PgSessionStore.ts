/**
 * A `SessionStore` on PostgreSQL, shared by every runner of a cluster: a shard that moves to
 * another process resumes there from what its last owner saved. One row per `[shard id, shard
 * count]` in `vigil_sessions` (created on first use).
 *
 * A save never moves a session's sequence backwards: a late write from a runner that has lost
 * the shard (frozen, partitioned) must not roll back what the new owner saved, or the next
 * resume would replay events already delivered. A save of another session id replaces the row
 * (a fresh identify starts a new session).
 *
 * Without fencing, a runner that lost the shard can still write another session id over the new
 * owner's row: a cluster's shards save through `PgShardOwners`' epoch-guarded stores instead.
 *
 * Like every store, it never fails: a row that is not a session (written by something else) or a
 * database error is a miss, logged as a `SessionStoreError`, and the shard identifies.
 */
import { SessionStore } from "@vigil/gateway"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { migrate } from "./internal/migrate.ts"
import { forwardOnly, load, logged, migrations as sessionMigrations } from "./internal/sessionRows.ts"

export const migrations = sessionMigrations

export const make = Effect.fnUntraced(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* migrate(migrations)

  return {
    load: load(sql),
    save: ([id, count], session) =>
      sql`
        INSERT INTO vigil_sessions (shard_id, shard_count, session_id, sequence, resume_url)
        VALUES (${id}, ${count}, ${session.sessionId}, ${session.sequence}, ${session.resumeUrl})
        ON CONFLICT (shard_id, shard_count) DO UPDATE SET
          session_id = excluded.session_id, sequence = excluded.sequence,
          resume_url = excluded.resume_url, updated_at = now()
        ${forwardOnly(sql)}`.pipe(Effect.asVoid, Effect.catch(logged("save", [id, count]))),
    clear: ([id, count]) =>
      sql`DELETE FROM vigil_sessions WHERE shard_id = ${id} AND shard_count = ${count}`.pipe(
        Effect.asVoid,
        Effect.catch(logged("clear", [id, count])),
      ),
  } satisfies SessionStore.SessionStoreService
})

/** The session store on the `SqlClient` in context (`PgDatabase.layer`); creates its table. */
export const layer = Layer.effect(SessionStore.SessionStore)(make())
