/**
 * The health of the whole cluster, readable from any runner: which runner holds which shard,
 * the shard's state and its heartbeat latency.
 *
 * Each runner writes one row per shard it runs to `vigil_shard_health` every `interval` (and
 * once at start); the row carries the ownership's epoch, so a runner that lost the shard can
 * never overwrite its new owner's row. A graceful leave deletes the row; a runner that dies
 * leaves it behind, and `read` says how old each row is (`stale` past three intervals) until
 * the next owner writes over it. When `ClusterHealth` is in the context, `ShardSingleton`
 * reports its shards; nothing else is needed.
 */
import type { SessionStore, Shard } from "@vigil/gateway"
import { Context, Duration, Effect, Layer, Schema } from "effect"
import { SqlClient, type SqlError, SqlSchema } from "effect/sql"
import { migrate } from "./internal/migrate.ts"

export interface ShardReport {
  readonly shard: SessionStore.ShardKey
  /** The runner that wrote it (`PgShardOwners`' `owner`, e.g. its runner address). */
  readonly owner: string
  readonly epoch: number
  /** The shard's state tag: `Ready`, `Resuming`, `BackingOff`, `Stopped`, ... */
  readonly state: string
  /** Why it is backing off or stopped; empty otherwise. */
  readonly detail: string
  /** Last heartbeat round trip, milliseconds. */
  readonly latencyMillis: number | undefined
  readonly sessionId: string | undefined
  /** How long ago the owner wrote it, on the database's clock. */
  readonly ageMillis: number
  /** Older than three report intervals: its runner has stopped reporting (dead, cut off). */
  readonly stale: boolean
}

export interface ClusterHealthService {
  readonly interval: Duration.Duration
  /** Writes the shard's status as this runner's, unless a newer epoch has written. Failures are logged. */
  readonly report: (
    shard: SessionStore.ShardKey,
    epoch: number,
    status: Shard.ShardStatus,
  ) => Effect.Effect<void>
  /** Removes this epoch's row (a graceful leave). */
  readonly leave: (shard: SessionStore.ShardKey, epoch: number) => Effect.Effect<void>
  /** Every shard's last report, by shard count then id. */
  readonly read: Effect.Effect<ReadonlyArray<ShardReport>, SqlError.SqlError | Schema.SchemaError>
}

export class ClusterHealth extends Context.Service<ClusterHealth, ClusterHealthService>()(
  "@vigil/cluster/ClusterHealth",
) {}

export interface ClusterHealthOptions {
  /** This runner's name in the rows (use the same as `PgShardOwners`' `owner`). */
  readonly owner: string
  /** How often each running shard is reported. Default 2 s. */
  readonly interval?: Duration.Input | undefined
}

export const migrations = [
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_shard_health (
      shard_id integer NOT NULL,
      shard_count integer NOT NULL,
      owner text NOT NULL,
      epoch bigint NOT NULL,
      state text NOT NULL,
      detail text NOT NULL,
      latency_ms double precision,
      session_id text,
      updated_at timestamptz NOT NULL,
      PRIMARY KEY (shard_id, shard_count)
    )`,
]

const Row = Schema.Struct({
  shardId: Schema.Number,
  shardCount: Schema.Number,
  owner: Schema.String,
  epoch: Schema.Number,
  state: Schema.String,
  detail: Schema.String,
  latencyMillis: Schema.NullOr(Schema.Number),
  sessionId: Schema.NullOr(Schema.String),
  ageMillis: Schema.Number,
})

const detailOf = (state: Shard.ShardState): string =>
  state._tag === "Stopped" || state._tag === "BackingOff" ? state.reason : ""

export const make = Effect.fnUntraced(function* (options: ClusterHealthOptions) {
  const sql = yield* SqlClient.SqlClient
  const interval = Duration.fromInputUnsafe(options.interval ?? Duration.seconds(2))
  const staleMillis = 3 * Duration.toMillis(interval)
  yield* migrate(migrations)
  const logged = (what: string) => (error: { readonly message: string }) =>
    Effect.logWarning(`cluster health: could not ${what}: ${error.message}`)

  const report = (
    [id, count]: SessionStore.ShardKey,
    epoch: number,
    status: Shard.ShardStatus,
  ): Effect.Effect<void> =>
    sql`
      INSERT INTO vigil_shard_health
        (shard_id, shard_count, owner, epoch, state, detail, latency_ms, session_id, updated_at)
      VALUES (${id}, ${count}, ${options.owner}, ${epoch}, ${status.state._tag}, ${detailOf(status.state)},
              ${status.latency ?? null}, ${status.sessionId ?? null}, clock_timestamp())
      ON CONFLICT (shard_id, shard_count) DO UPDATE SET
        owner = excluded.owner, epoch = excluded.epoch, state = excluded.state, detail = excluded.detail,
        latency_ms = excluded.latency_ms, session_id = excluded.session_id, updated_at = excluded.updated_at
      WHERE vigil_shard_health.epoch <= excluded.epoch`.pipe(Effect.asVoid, Effect.catch(logged("report")))

  const leave = ([id, count]: SessionStore.ShardKey, epoch: number): Effect.Effect<void> =>
    sql`DELETE FROM vigil_shard_health WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch}`.pipe(
      Effect.asVoid,
      Effect.catch(logged("remove the report")),
    )

  const read = SqlSchema.findAll({
    Request: Schema.Void,
    Result: Row,
    execute: () => sql`
      SELECT shard_id::float8 AS "shardId", shard_count::float8 AS "shardCount", owner, epoch::float8 AS epoch,
             state, detail, latency_ms AS "latencyMillis", session_id AS "sessionId",
             (extract(epoch FROM clock_timestamp() - updated_at) * 1000)::float8 AS "ageMillis"
      FROM vigil_shard_health ORDER BY shard_count, shard_id`,
  })(undefined).pipe(
    Effect.map((rows) =>
      rows.map(
        (row): ShardReport => ({
          shard: [row.shardId, row.shardCount],
          owner: row.owner,
          epoch: row.epoch,
          state: row.state,
          detail: row.detail,
          latencyMillis: row.latencyMillis ?? undefined,
          sessionId: row.sessionId ?? undefined,
          ageMillis: row.ageMillis,
          stale: row.ageMillis > staleMillis,
        }),
      ),
    ),
  )

  return { interval, report, leave, read } satisfies ClusterHealthService
})

/** `ClusterHealth` on PostgreSQL (the `SqlClient` in context); creates its table. */
export const layer = (
  options: ClusterHealthOptions,
): Layer.Layer<ClusterHealth, SqlError.SqlError, SqlClient.SqlClient> =>
  Layer.effect(ClusterHealth)(make(options))
