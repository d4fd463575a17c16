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
 * - **The gateway's view.** A stopped owner closes its socket, but a close sent into a dead
 *   link never arrives: the gateway keeps a silent socket until its heartbeat timeout. So an
 *   owner reports each socket it closed (`vigil_closed_sockets`, also once its database is back),
 *   and a takeover whose previous owner neither reported it nor left gracefully waits until
 *   `gatewayDropAfter` past that lease's end — unless the previous runner's address refuses
 *   connections (its process is gone, and its kernel closed the socket), or the report arrives
 *   meanwhile. That wait is recorded with the new epoch (`earlier_socket_until`), so an owner
 *   that dies while waiting passes it on. A kill -9 or a deploy fails over without it; a
 *   partitioned, frozen or powered-off runner costs up to `gatewayDropAfter`.
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
import * as OwnerProbe from "./internal/OwnerProbe.ts"
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
  /**
   * Who this runner is, as the owner row shows it: its runner address `host:port`, which the
   * next owner probes (a refused connection proves the process gone). Default "runner".
   */
  readonly owner?: string | undefined
  /**
   * How long the gateway may keep a silent socket open after its last heartbeat: a takeover from
   * an owner that may still be alive and never reported its socket closed waits this long past
   * that owner's lease. Discord does not publish its timeout; it exceeds the 41.25 s heartbeat
   * interval. Default 90 s.
   */
  readonly gatewayDropAfter?: Duration.Input | undefined
  /** Whether a previous owner's process is provably gone. Default: a TCP connect to its address. */
  readonly probe?: ((owner: string) => Effect.Effect<OwnerProbe.Verdict>) | undefined
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
  // Until when an earlier owner's socket may still be open at the gateway.
  (sql: SqlClient.SqlClient) =>
    sql`ALTER TABLE vigil_shard_owners ADD COLUMN IF NOT EXISTS earlier_socket_until timestamptz`,
  // The epochs whose owner closed its socket (no ownership needed to say so).
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_closed_sockets (
      shard_id integer NOT NULL,
      shard_count integer NOT NULL,
      epoch bigint NOT NULL,
      PRIMARY KEY (shard_id, shard_count, epoch)
    )`,
]

const Owned = Schema.Struct({ owned: Schema.Number })

const Previous = Schema.Struct({
  epoch: Schema.Number,
  owner: Schema.String,
  /** Until the lease's end (negative once past), on the database's clock. */
  leaseMillis: Schema.Number,
  /** Until an owner before it may have had its socket dropped (≤ 0: no such wait). */
  earlierMillis: Schema.Number,
  /** It reported its socket closed (a graceful leave or a fence). */
  closed: Schema.Boolean,
})

/** What a takeover must wait for: the previous owner's lease, and the gateway's view of its socket. */
interface Taken {
  readonly epoch: number
  readonly previous: typeof Previous.Type | undefined
  /** The lease's rest plus slack (0 once over). */
  readonly leaseWait: number
  /** The same, or until the gateway must have dropped an unreported socket. */
  readonly socketWait: number
}

export const make = Effect.fnUntraced(function* (options: PgShardOwnersOptions) {
  const { fenceAfter, renewInterval } = yield* timings(options)
  const sql = yield* SqlClient.SqlClient
  const clock = yield* Clock.Clock
  const now = () => clock.currentTimeMillisUnsafe()
  const retryInterval = Duration.fromInputUnsafe(options.retryInterval ?? Duration.seconds(1))
  const owner = options.owner ?? "runner"
  const fenceMillis = Duration.toMillis(fenceAfter)
  const renewMillis = Duration.toMillis(renewInterval)
  const dropMillis = Duration.toMillis(
    Duration.fromInputUnsafe(options.gatewayDropAfter ?? Duration.seconds(90)),
  )
  const probe = options.probe ?? ((address: string) => OwnerProbe.probe(address, renewInterval))
  const runnerScope = yield* Effect.scope
  yield* migrate(migrations)

  // Takes the next epoch; says how long the previous owner's lease and socket may still run.
  const take = ([id, count]: SessionStore.ShardKey) =>
    sql.withTransaction(
      Effect.gen(function* () {
        const [previous] = yield* SqlSchema.findAll({
          Request: Schema.Void,
          Result: Previous,
          execute: () => sql`
            SELECT o.epoch::float8 AS epoch, o.owner,
                   (extract(epoch FROM o.lease_until - clock_timestamp()) * 1000)::float8 AS "leaseMillis",
                   COALESCE(extract(epoch FROM o.earlier_socket_until - clock_timestamp()) * 1000, 0)::float8
                     AS "earlierMillis",
                   EXISTS (SELECT FROM vigil_closed_sockets c
                           WHERE c.shard_id = o.shard_id AND c.shard_count = o.shard_count AND c.epoch = o.epoch)
                     AS closed
            FROM vigil_shard_owners o WHERE o.shard_id = ${id} AND o.shard_count = ${count} FOR UPDATE`,
        })(undefined)
        const leaseWait =
          previous !== undefined && previous.leaseMillis > 0 ? previous.leaseMillis + renewMillis : 0
        const socketWait =
          previous === undefined || previous.closed
            ? leaseWait
            : Math.max(leaseWait, previous.leaseMillis + dropMillis)
        const earlier = Math.max(previous?.earlierMillis ?? 0, socketWait)
        const [taken] = yield* SqlSchema.findAll({
          Request: Schema.Void,
          Result: Schema.Struct({ epoch: Schema.Number }),
          execute: () => sql`
            INSERT INTO vigil_shard_owners (shard_id, shard_count, epoch, owner, lease_until, earlier_socket_until)
            VALUES (${id}, ${count}, 1, ${owner}, clock_timestamp() + ${fenceMillis} * interval '1 millisecond',
                    clock_timestamp() + ${earlier} * interval '1 millisecond')
            ON CONFLICT (shard_id, shard_count) DO UPDATE SET
              epoch = vigil_shard_owners.epoch + 1, owner = excluded.owner, lease_until = excluded.lease_until,
              earlier_socket_until = excluded.earlier_socket_until
            RETURNING epoch::float8 AS epoch`,
        })(undefined)
        if (previous !== undefined) {
          yield* sql`DELETE FROM vigil_closed_sockets
                     WHERE shard_id = ${id} AND shard_count = ${count} AND epoch < ${previous.epoch}`
        }
        return { epoch: taken!.epoch, previous, leaseWait, socketWait } satisfies Taken
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
    const closedSocket = (epoch: number) => sql`
      INSERT INTO vigil_closed_sockets (shard_id, shard_count, epoch) VALUES (${id}, ${count}, ${epoch})
      ON CONFLICT DO NOTHING`
    const reportClosed = (epoch: number) =>
      Effect.gen(function* () {
        for (let attempt = 1; ; attempt++) {
          const written = yield* Effect.result(closedSocket(epoch))
          if (written._tag === "Success") return
          if (attempt === 1) {
            yield* Effect.logWarning(
              `cannot record the closed socket yet (${written.failure.message}); retrying`,
            )
          }
          yield* Effect.sleep(retryInterval)
        }
      })

    // The shard must start somewhere: a failing database is waited out, never given up on.
    let since = now()
    const takeOrWait: Effect.Effect<Taken> = Effect.suspend(() => {
      since = now()
      return take(shard)
    }).pipe(
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
    // Ends the lease when the runner gives the shard up cleanly (and only for this epoch); its
    // socket is closed by then (the shard's scope closes first). If the database does not take
    // it now, the closed socket is still reported later, from the runner's scope.
    yield* Effect.addFinalizer(() =>
      sql`
        WITH released AS (
          UPDATE vigil_shard_owners SET lease_until = clock_timestamp()
          WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch}
        )
        ${closedSocket(epoch)}`.pipe(
        Effect.timeoutOption(renewInterval),
        Effect.flatMap(
          Option.match({ onNone: () => Effect.fail("no answer in time"), onSome: () => Effect.void }),
        ),
        Effect.catch(() =>
          reportClosed(epoch).pipe(
            Effect.timeoutOption(Duration.millis(dropMillis)),
            Effect.forkIn(runnerScope),
          ),
        ),
        Effect.asVoid,
      ),
    )

    // Connect only once the previous owner cannot hold the shard's socket at the gateway any more.
    const started = now()
    const { previous, leaseWait } = taken
    let socketWait = taken.socketWait
    const unreported = () => socketWait > leaseWait
    const waitUntil = () => started + Math.max(previous?.earlierMillis ?? 0, socketWait)
    // The row passes on what is left to wait (the take stored the longest case); best effort.
    const passOn = (untilMillis: number | null) =>
      sql`
        UPDATE vigil_shard_owners SET earlier_socket_until =
          CASE WHEN ${untilMillis}::float8 IS NULL THEN NULL
               ELSE clock_timestamp() + ${untilMillis}::float8 * interval '1 millisecond' END
        WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch}`.pipe(
        Effect.timeoutOption(renewInterval),
        Effect.ignore,
      )
    /** The previous owner's socket is proven closed: only its lease (and earlier owners) remain. */
    const cleared = (why: string) =>
      Effect.suspend(() => {
        socketWait = leaseWait
        return Effect.andThen(
          Effect.logInfo(`the previous owner's socket is closed (${why})`),
          passOn(Math.max(0, waitUntil() - now())),
        )
      })
    if (previous !== undefined && unreported() && (yield* probe(previous.owner)) === "gone") {
      yield* cleared("its runner address refuses connections: its process is gone")
    }
    if (now() < waitUntil()) {
      const left = Math.ceil(waitUntil() - now())
      yield* unreported()
        ? Effect.logWarning(
            `waiting up to ${left} ms: the previous owner (${previous?.owner}) may be alive and never reported its socket closed, so the gateway may still hold it`,
          )
        : Effect.logInfo(`waiting ${left} ms for the previous owner's lease to run out`)
    }
    while (now() < waitUntil()) {
      yield* Effect.sleep(Duration.millis(Math.min(renewMillis, waitUntil() - now())))
      if (previous !== undefined && unreported()) {
        const reported = yield* sql<{ closed: boolean }>`
          SELECT EXISTS (SELECT FROM vigil_closed_sockets
                         WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${previous.epoch}) AS closed`.pipe(
          Effect.map((rows) => rows[0]?.closed === true),
          Effect.orElseSucceed(() => false),
        )
        if (reported) yield* cleared("it reported so")
      }
    }
    const waitedMillis = now() - started
    // Nothing earlier can hold the socket now.
    if (taken.socketWait > 0 || (previous?.earlierMillis ?? 0) > 0) yield* passOn(null)

    // This epoch's socket is closed (its lease lapsed and the shard stopped): say so until it is
    // written, so that a takeover need not wait for the gateway's timeout.
    const closed = reportClosed(epoch)
    // Renewed again after a lapse: unsay it (under the ownership) before the shard reconnects.
    const recovered: Effect.Effect<boolean> = Effect.gen(function* () {
      while (yield* lease.recovered) {
        const reopened = yield* owned(
          () => sql`
            WITH owner AS (${ownerOf(epoch)}), reopened AS (
              DELETE FROM vigil_closed_sockets
              WHERE shard_id = ${id} AND shard_count = ${count} AND epoch = ${epoch} AND EXISTS (SELECT FROM owner)
            )
            SELECT count(*)::float8 AS owned FROM owner`,
        ).pipe(Effect.result)
        if (reopened._tag === "Success") {
          if (reopened.success) return true
          yield* lease.supersede
          return false
        }
        yield* Effect.logWarning(`cannot reopen the shard yet (${reopened.failure.message}); retrying`)
        yield* Effect.sleep(retryInterval)
      }
      return false
    })

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
      closed,
      recovered,
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
