/**
 * Fencing for a cluster's shards, on PostgreSQL: `ShardOwners` whose ownerships are an epoch
 * (fencing token) and a lease in `vigil_shard_owners`, one row per `[shard id, shard count]`.
 *
 * - **Epoch.** Each start of a shard's singleton takes `epoch + 1`. Every session save and
 *   clear of that runner carries its epoch and is refused in SQL once a newer one exists (the
 *   owner row is read `FOR SHARE` in the same statement, so a takeover waits for a save in
 *   flight and a save never lands after it). A refused save lapses the ownership at once: the
 *   shard closes its socket and delivers nothing more.
 * - **Lease.** The owner renews `lease_until = clock_timestamp() + fenceAfter` (the database's
 *   clock) every `renewInterval`. A runner that cannot renew for `fenceAfter` (database
 *   unreachable, partitioned, stalled) stops its shard; it measures from when its last good
 *   renewal was *sent*, so it always stops before `lease_until` passes.
 * - **Takeover.** A new owner that finds the previous lease still running waits for it to end
 *   (plus `renewInterval` of slack for the old runner to close its socket) before it connects.
 *   A graceful leave ends its lease at once, so the next owner does not wait.
 *
 * Timing. The cluster engine moves a shard once its lock expires (`shardLockExpiration`: the
 * lock's connection idle that long, or its refresh missing); with `fenceAfter` below it, a cut
 * runner has stopped before the engine even lets another runner start the shard. The takeover
 * wait covers the rest (a lock released early, e.g. its connection reset): two runners never
 * hold the gateway socket of one shard at once. So `renewInterval < fenceAfter <
 * shardLockExpiration` is required (`FencingConfigError` otherwise); leave at least one lock
 * refresh between `fenceAfter` and the expiry (e.g. expiry 3 s, refresh 1 s, fenceAfter 2 s,
 * renewal 0.5 s: a kill -9 fails over in ~3.5 s without any takeover wait).
 */
import type { SessionStore } from "@vigil/gateway"
import { Clock, Duration, Effect, Layer, Option, Schema } from "effect"
import { SqlClient, type SqlError, SqlSchema } from "effect/sql"
import { FencingConfigError } from "./ClusterError.ts"
import * as Lease from "./internal/Lease.ts"
import { migrate } from "./internal/migrate.ts"
import { forwardOnly, load, logged, migrations as sessionMigrations } from "./internal/sessionRows.ts"
import { type Ownership, ShardOwners, type ShardOwnersService } from "./ShardOwners.ts"

export interface PgShardOwnersOptions {
  /** The cluster's `ShardingConfig.shardLockExpiration`: fencing must act before it. */
  readonly shardLockExpiration: Duration.Input
  /** How long a runner keeps its shard without a successful renewal. Default 2/3 of the expiry. */
  readonly fenceAfter?: Duration.Input | undefined
  /** How often the lease is renewed. Default 1 s. */
  readonly renewInterval?: Duration.Input | undefined
  /** Pause between attempts to take a shard while the database fails. Default 1 s. */
  readonly retryInterval?: Duration.Input | undefined
  /** Who this runner is, as the owner row shows it (e.g. its runner address). Default "runner". */
  readonly owner?: string | undefined
}

export interface FencingTimings {
  readonly fenceAfter: Duration.Duration
  readonly renewInterval: Duration.Duration
}

/** Checks `renewInterval < fenceAfter < shardLockExpiration` and fills in the defaults. */
export const timings = (options: PgShardOwnersOptions): Effect.Effect<FencingTimings, FencingConfigError> => {
  const parse = (name: string, input: Duration.Input) =>
    Option.match(Duration.fromInput(input), {
      onNone: () => Effect.fail(new FencingConfigError({ reason: `${name} is not a duration` })),
      onSome: Effect.succeed,
    })
  return Effect.gen(function* () {
    const expiry = yield* parse("shardLockExpiration", options.shardLockExpiration)
    const fenceAfter =
      options.fenceAfter === undefined
        ? Duration.millis(Math.floor((Duration.toMillis(expiry) * 2) / 3))
        : yield* parse("fenceAfter", options.fenceAfter)
    const renewInterval = yield* parse("renewInterval", options.renewInterval ?? Duration.seconds(1))
    if (!Duration.isGreaterThan(expiry, fenceAfter)) {
      return yield* new FencingConfigError({
        reason: `fenceAfter (${Duration.format(fenceAfter)}) must be shorter than shardLockExpiration (${Duration.format(expiry)}): a cut runner must stop its shards before another may take them`,
      })
    }
    if (!Duration.isGreaterThan(fenceAfter, renewInterval) || Duration.toMillis(renewInterval) <= 0) {
      return yield* new FencingConfigError({
        reason: `renewInterval (${Duration.format(renewInterval)}) must be positive and shorter than fenceAfter (${Duration.format(fenceAfter)})`,
      })
    }
    return { fenceAfter, renewInterval }
  })
}

export const migrations = [
  ...sessionMigrations,
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_shard_owners (
      shard_id integer NOT NULL,
      shard_count integer NOT NULL,
      epoch bigint NOT NULL,
      owner text NOT NULL,
      lease_until timestamptz NOT NULL,
      PRIMARY KEY (shard_id, shard_count)
    )`,
]

const Owned = Schema.Struct({ owned: Schema.Number })

export const make = Effect.fnUntraced(function* (options: PgShardOwnersOptions) {
  const { fenceAfter, renewInterval } = yield* timings(options)
  const sql = yield* SqlClient.SqlClient
  const clock = yield* Clock.Clock
  const retryInterval = Duration.fromInputUnsafe(options.retryInterval ?? Duration.seconds(1))
  const owner = options.owner ?? "runner"
  const fenceMillis = Duration.toMillis(fenceAfter)
  yield* migrate(migrations)

  // Takes the next epoch; says how long the previous owner's lease still runs.
  const take = ([id, count]: SessionStore.ShardKey) =>
    sql.withTransaction(
      Effect.gen(function* () {
        const previous = yield* SqlSchema.findAll({
          Request: Schema.Void,
          Result: Schema.Struct({ waitMillis: Schema.Number }),
          execute: () => sql`
            SELECT CASE WHEN lease_until > clock_timestamp()
                   THEN extract(epoch FROM lease_until - clock_timestamp()) * 1000 ELSE 0 END::float8 AS "waitMillis"
            FROM vigil_shard_owners WHERE shard_id = ${id} AND shard_count = ${count} FOR UPDATE`,
        })(undefined)
        const [taken] = yield* SqlSchema.findAll({
          Request: Schema.Void,
          Result: Schema.Struct({ epoch: Schema.Number }),
          execute: () => sql`
            INSERT INTO vigil_shard_owners (shard_id, shard_count, epoch, owner, lease_until)
            VALUES (${id}, ${count}, 1, ${owner}, clock_timestamp() + ${fenceMillis} * interval '1 millisecond')
            ON CONFLICT (shard_id, shard_count) DO UPDATE SET
              epoch = vigil_shard_owners.epoch + 1, owner = excluded.owner, lease_until = excluded.lease_until
            RETURNING epoch::float8 AS epoch`,
        })(undefined)
        return { epoch: taken!.epoch, waitMillis: previous[0]?.waitMillis ?? 0 }
      }),
    )

  /** Runs a statement guarded by `owner AS (… epoch = mine FOR SHARE)`; whether the epoch still owns. */
  const owned = (
    execute: () => Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>,
  ): Effect.Effect<boolean, SqlError.SqlError | Schema.SchemaError> =>
    SqlSchema.findAll({ Request: Schema.Void, Result: Owned, execute })(undefined).pipe(
      Effect.map((rows) => (rows[0]?.owned ?? 0) > 0),
    )

  const acquire = Effect.fnUntraced(function* (shard: SessionStore.ShardKey) {
    const [id, count] = shard
    const ownerOf = (epoch: number) => sql`
      SELECT 1 FROM vigil_shard_owners
      WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch} FOR SHARE`

    // The shard must start somewhere: a failing database is waited out, never given up on.
    let since = clock.currentTimeMillisUnsafe()
    const takeOrWait: Effect.Effect<{ readonly epoch: number; readonly waitMillis: number }> = Effect.suspend(
      () => {
        since = clock.currentTimeMillisUnsafe()
        return take(shard)
      },
    ).pipe(
      Effect.catch((error) =>
        Effect.logWarning(
          `cannot take the shard (${error.message}); retrying in ${Duration.format(retryInterval)}`,
        ).pipe(Effect.andThen(Effect.sleep(retryInterval)), Effect.andThen(takeOrWait)),
      ),
    )
    const taken = yield* takeOrWait
    const epoch = taken.epoch

    const lease = yield* Lease.make({
      renew: owned(
        () => sql`
          UPDATE vigil_shard_owners SET lease_until = clock_timestamp() + ${fenceMillis} * interval '1 millisecond'
          WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch}
          RETURNING 1::float8 AS owned`,
      ).pipe(Effect.map((still): Lease.Renewal => (still ? "Renewed" : "Superseded"))),
      renewInterval,
      fenceAfter,
      since,
    })
    // Ends the lease when the runner gives the shard up cleanly (and only for this epoch).
    yield* Effect.addFinalizer(() =>
      sql`
        UPDATE vigil_shard_owners SET lease_until = clock_timestamp()
        WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch}`.pipe(
        Effect.timeoutOption(renewInterval),
        Effect.ignore,
      ),
    )

    // The previous owner may still hold its socket: wait until its lease (and the slack for
    // closing) has run out. Zero after a graceful leave or once its lease had expired.
    const waitedMillis = taken.waitMillis > 0 ? taken.waitMillis + Duration.toMillis(renewInterval) : 0
    if (waitedMillis > 0) {
      yield* Effect.logInfo(`waiting ${Math.ceil(waitedMillis)} ms for the previous owner's lease to run out`)
      yield* Effect.sleep(Duration.millis(waitedMillis))
    }

    /** A write for this epoch only; refused (a newer owner exists) → the lease is superseded. */
    const guarded = (
      operation: "save" | "clear",
      write: () => Effect.Effect<boolean, SqlError.SqlError | Schema.SchemaError>,
    ) =>
      Effect.suspend(() => (lease.valid() ? write() : Effect.succeed(true))).pipe(
        Effect.flatMap((still) =>
          still
            ? Effect.void
            : Effect.andThen(
                Effect.logWarning(`the ${operation} was refused: epoch ${epoch} of this shard is superseded`),
                lease.supersede,
              ),
        ),
        Effect.catch(logged(operation, shard)),
      )

    const store: SessionStore.SessionStoreService = {
      load: load(sql),
      save: (_, session) =>
        guarded("save", () =>
          owned(
            () => sql`
              WITH owner AS (${ownerOf(epoch)}), saved AS (
                INSERT INTO vigil_sessions (shard_id, shard_count, session_id, sequence, resume_url)
                SELECT ${id}::integer, ${count}::integer, ${session.sessionId}::text, ${session.sequence}::bigint,
                       ${session.resumeUrl}::text
                FROM owner
                ON CONFLICT (shard_id, shard_count) DO UPDATE SET
                  session_id = excluded.session_id, sequence = excluded.sequence,
                  resume_url = excluded.resume_url, updated_at = now()
                ${forwardOnly(sql)}
              )
              SELECT count(*)::float8 AS owned FROM owner`,
          ),
        ),
      clear: () =>
        guarded("clear", () =>
          owned(
            () => sql`
              WITH owner AS (${ownerOf(epoch)}), cleared AS (
                DELETE FROM vigil_sessions
                WHERE shard_id = ${id} AND shard_count = ${count} AND EXISTS (SELECT FROM owner)
              )
              SELECT count(*)::float8 AS owned FROM owner`,
          ),
        ),
    }

    return {
      epoch,
      waitedMillis,
      store,
      valid: lease.valid,
      lapsed: lease.lapsed,
      recovered: lease.recovered,
    } satisfies Ownership
  })

  return { acquire } satisfies ShardOwnersService
})

/**
 * `ShardOwners` on the `SqlClient` in context (`PgDatabase.layer`); creates its tables. Fails
 * with `FencingConfigError` when the timings cannot fence in time.
 */
export const layer = (
  options: PgShardOwnersOptions,
): Layer.Layer<ShardOwners, FencingConfigError | SqlError.SqlError, SqlClient.SqlClient> =>
  Layer.effect(ShardOwners)(make(options))
