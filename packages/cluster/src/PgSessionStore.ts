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
 * Like every store, it never fails: a row that is not a session (written by something else) or a
 * database error is a miss, logged as a `SessionStoreError`, and the shard identifies.
 */
import { GatewayError, SessionStore } from "@vigil/gateway"
import { Effect, Layer, Option, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import { migrate } from "./internal/migrate.ts"

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

export const make = Effect.fnUntraced(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* migrate(migrations)

  const find = SqlSchema.findOneOption({
    Request: Key,
    Result: Row,
    execute: ({ id, count }) => sql`
      SELECT session_id AS "sessionId", sequence::float8 AS "sequence", resume_url AS "resumeUrl"
      FROM vigil_sessions WHERE shard_id = ${id} AND shard_count = ${count}`,
  })

  const logged =
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

  return {
    load: (shard) =>
      find({ id: shard[0], count: shard[1] }).pipe(
        Effect.catch((error) => Effect.as(logged("load", shard)(error), Option.none())),
      ),
    save: ([id, count], session) =>
      sql`
        INSERT INTO vigil_sessions (shard_id, shard_count, session_id, sequence, resume_url)
        VALUES (${id}, ${count}, ${session.sessionId}, ${session.sequence}, ${session.resumeUrl})
        ON CONFLICT (shard_id, shard_count) DO UPDATE SET
          session_id = excluded.session_id, sequence = excluded.sequence,
          resume_url = excluded.resume_url, updated_at = now()
        WHERE vigil_sessions.session_id <> excluded.session_id
          OR coalesce(excluded.sequence, -1) >= coalesce(vigil_sessions.sequence, -1)`.pipe(
        Effect.asVoid,
        Effect.catch(logged("save", [id, count])),
      ),
    clear: ([id, count]) =>
      sql`DELETE FROM vigil_sessions WHERE shard_id = ${id} AND shard_count = ${count}`.pipe(
        Effect.asVoid,
        Effect.catch(logged("clear", [id, count])),
      ),
  } satisfies SessionStore.SessionStoreService
})

/** The session store on the `SqlClient` in context (`PgDatabase.layer`); creates its table. */
export const layer = Layer.effect(SessionStore.SessionStore)(make())
