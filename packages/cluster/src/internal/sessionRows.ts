/**
 * The `vigil_sessions` table, shared by `PgSessionStore` and the epoch-guarded stores of
 * `PgShardOwners`: its schema, the read, and how a failed call is logged (a store never fails).
 */
import { GatewayError, type SessionStore } from "@vigil/gateway"
import { Effect, Option, Schema } from "effect"
import { type SqlClient, SqlSchema } from "effect/sql"

const Row = Schema.Struct({
  sessionId: Schema.NonEmptyString,
  sequence: Schema.NullOr(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  resumeUrl: Schema.String.check(Schema.isPattern(/^wss?:\/\//)),
})

const Key = Schema.Struct({ id: Schema.Int, count: Schema.Int })

export const migrations = [
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_sessions (
      shard_id integer NOT NULL,
      shard_count integer NOT NULL,
      session_id text NOT NULL,
      sequence bigint,
      resume_url text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (shard_id, shard_count)
    )`,
]

/** Logs a failed store call as a `SessionStoreError`. */
export const logged =
  (operation: GatewayError.SessionStoreError["operation"], shard: SessionStore.ShardKey) =>
  (error: { readonly _tag: string; readonly message: string }) =>
    Effect.logWarning(
      new GatewayError.SessionStoreError({
        operation,
        shard,
        reason:
          error._tag === "SchemaError"
            ? "the stored row is not a session (corrupt or foreign)"
            : error.message,
      }).message,
    )

/** Reads a shard's session; a row that is not one, or a database error, is a logged miss. */
export const load =
  (sql: SqlClient.SqlClient) =>
  (shard: SessionStore.ShardKey): Effect.Effect<Option.Option<SessionStore.StoredSession>> =>
    SqlSchema.findOneOption({
      Request: Key,
      Result: Row,
      execute: ({ id, count }) => sql`
        SELECT session_id AS "sessionId", sequence::float8 AS "sequence", resume_url AS "resumeUrl"
        FROM vigil_sessions WHERE shard_id = ${id} AND shard_count = ${count}`,
    })({ id: shard[0], count: shard[1] }).pipe(
      Effect.catch((error) => Effect.as(logged("load", shard)(error), Option.none())),
    )

/**
 * Keeps a session's sequence from moving backwards: a late write of the same session (from a
 * runner that lost the shard) must not roll back what was saved since; another session id
 * replaces the row (a fresh identify starts a new session). For `ON CONFLICT … DO UPDATE`.
 */
export const forwardOnly = (sql: SqlClient.SqlClient) => sql`
  WHERE vigil_sessions.session_id <> excluded.session_id
    OR coalesce(excluded.sequence, -1) >= coalesce(vigil_sessions.sequence, -1)`
