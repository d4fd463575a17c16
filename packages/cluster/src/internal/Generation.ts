/**
 * The cluster's shard count and its reshard, in PostgreSQL: one row in `vigil_generation`
 * (the serving count; a reshard's target while one runs or stays partial) and one row per
 * old shard in `vigil_reshard_waves` (its wave: pending → go → running → handed → done, or
 * failed; `handed`: the app finished the old shard's stream to its end, its guilds are the new
 * shards' from now on).
 * Every runner reads the row to know which singletons to register and what each one does
 * (`roleOf`); the coordinator and the waves write it.
 *
 * A count that is not a multiple of the serving one (3 → 5, or fewer) is one whole-set wave,
 * row `old_shard = 0` (`wholeSet`): old shard 0's singleton carries it out with every old and
 * new shard in its process; the other old shards stand aside (`wait`) meanwhile.
 */
import type { SessionStore } from "@vigil/gateway"
import { Effect, Schema } from "effect"
import { SqlClient, type SqlError, SqlSchema } from "effect/sql"

export const migrations = [
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_generation (
      id integer PRIMARY KEY CHECK (id = 1),
      count integer NOT NULL CHECK (count > 0),
      reshard_to integer,
      state text NOT NULL DEFAULT 'idle',
      reason text,
      started_at timestamptz,
      finished_at timestamptz
    )`,
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_reshard_waves (
      from_count integer NOT NULL,
      to_count integer NOT NULL,
      old_shard integer NOT NULL,
      state text NOT NULL,
      attempts integer NOT NULL DEFAULT 0,
      reason text,
      PRIMARY KEY (from_count, to_count, old_shard)
    )`,
]

export type WaveState = "pending" | "go" | "running" | "handed" | "done" | "failed"

export interface Wave {
  readonly state: WaveState
  readonly attempts: number
  /** Why its last attempt failed. */
  readonly reason: string | undefined
}

/**
 * - `idle`: `count` serves, no reshard.
 * - `running`: a reshard `count` → `to` is under way.
 * - `failed`: the last reshard failed before any wave was done: `count` serves, as before.
 * - `partial`: a reshard failed after some waves were done: their guilds are served by shards
 *   of `to`, the others by shards of `count` (each guild by one); `reshard(to)` continues it.
 */
export interface State {
  readonly count: number
  readonly to: number | undefined
  readonly phase: "idle" | "running" | "partial" | "failed"
  /** How `count` → `to` is carried out (while `to` is set): a wave per old shard, or the whole set at once. */
  readonly mode: "waves" | "whole-set" | undefined
  /** Per old shard, its wave's state (while `to` is set). */
  readonly waves: ReadonlyMap<number, Wave>
  readonly reason: string | undefined
  readonly tookMillis: number | undefined
}

const GenerationRow = Schema.Struct({
  count: Schema.Number,
  to: Schema.NullOr(Schema.Number),
  state: Schema.Literals(["idle", "running", "partial", "failed"]),
  reason: Schema.NullOr(Schema.String),
  tookMillis: Schema.NullOr(Schema.Number),
})

const WaveRow = Schema.Struct({
  shard: Schema.Number,
  state: Schema.Literals(["pending", "go", "running", "handed", "done", "failed"]),
  attempts: Schema.Number,
  reason: Schema.NullOr(Schema.String),
})

/** Reads the state; with no row yet, writes `initial` as the serving count first. */
export const read = (initial: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO vigil_generation (id, count) VALUES (1, ${initial}) ON CONFLICT (id) DO NOTHING`
    return (yield* readIfAny)!
  })

/** Reads the state; none when no runner has written the cluster's count yet. */
export const readIfAny = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* SqlSchema.findAll({
    Request: Schema.Void,
    Result: GenerationRow,
    execute: () => sql`
        SELECT count::float8 AS count, reshard_to::float8 AS "to", state, reason,
               (extract(epoch FROM finished_at - started_at) * 1000)::float8 AS "tookMillis"
        FROM vigil_generation WHERE id = 1`,
  })(undefined)
  if (row === undefined) return undefined
  const waves = new Map<number, Wave>()
  if (row!.to !== null) {
    const rows = yield* SqlSchema.findAll({
      Request: Schema.Void,
      Result: WaveRow,
      execute: () => sql`
          SELECT old_shard::float8 AS shard, state, attempts::float8 AS attempts, reason FROM vigil_reshard_waves
          WHERE from_count = ${row!.count} AND to_count = ${row!.to} ORDER BY old_shard`,
    })(undefined)
    for (const wave of rows)
      waves.set(wave.shard, { state: wave.state, attempts: wave.attempts, reason: wave.reason ?? undefined })
  }
  return {
    count: row!.count,
    to: row!.to ?? undefined,
    phase: row!.state,
    mode: row!.to === null ? undefined : wholeSet(row!.count, row!.to) ? "whole-set" : "waves",
    waves,
    reason: row!.reason ?? undefined,
    tookMillis: row!.tookMillis ?? undefined,
  } satisfies State
})

/** Whether `from` → `to` is one whole-set wave (not a multiple: the new set runs beside the whole old one). */
export const wholeSet = (from: number, to: number): boolean => !(to > from && to % from === 0)

/** The old shard whose singleton carries the whole-set wave out (the one wave row). */
export const wholeSetLead = 0

/** What a shard's singleton does under a state. */
export type Role =
  /** Runs the shard (resuming its stored session). */
  | "serve"
  /** Carries its wave out (an old shard whose wave is due). */
  | "wave"
  /** Runs nothing yet: a new shard whose wave is not done (or an old one beside a whole-set wave). */
  | "wait"
  /** Runs nothing any more: an old shard whose wave is done, or a count no longer used. */
  | "retired"

export const roleOf = (state: State, [id, count]: SessionStore.ShardKey): Role => {
  const whole = state.to !== undefined && wholeSet(state.count, state.to)
  if (count === state.count) {
    const wave = state.to === undefined ? undefined : state.waves.get(whole ? wholeSetLead : id)?.state
    if (wave === "done") return "retired"
    // The whole-set wave runs in the lead's singleton; the others leave it their sessions.
    const carrier = !whole || id === wholeSetLead
    // Handed: its session is gone; only the wave can finish (commit what the new shards saved).
    if (wave === "handed") return carrier ? "wave" : "wait"
    if (state.phase === "running" && (wave === "go" || wave === "running")) return carrier ? "wave" : "wait"
    return "serve"
  }
  if (count === state.to)
    return state.waves.get(whole ? wholeSetLead : id % state.count)?.state === "done" ? "serve" : "wait"
  return "retired"
}

export type StartError =
  | { readonly _tag: "in-progress"; readonly detail: string }
  | { readonly _tag: "same-count"; readonly detail: string }

/**
 * Starts (or continues, when `partial` with the same target) a reshard to `to`, in one
 * transaction: its waves pending (one per old shard, or the whole-set one), the row `running`.
 */
export const begin = (to: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        const [row] = yield* SqlSchema.findAll({
          Request: Schema.Void,
          Result: Schema.Struct({
            count: Schema.Number,
            to: Schema.NullOr(Schema.Number),
            state: Schema.String,
          }),
          execute: () => sql`
            SELECT count::float8 AS count, reshard_to::float8 AS "to", state
            FROM vigil_generation WHERE id = 1 FOR UPDATE`,
        })(undefined)
        const from = row!.count
        if (row!.state === "running") {
          return { _tag: "in-progress", detail: `a reshard ${from} → ${row!.to} is under way` } as StartError
        }
        if (row!.state === "partial" && row!.to !== to) {
          return {
            _tag: "in-progress",
            detail: `a reshard ${from} → ${row!.to} stopped partway: only reshard(${row!.to}) continues it`,
          } as StartError
        }
        if (!Number.isInteger(to) || to < 1 || to === from) {
          return {
            _tag: "same-count",
            detail: `${to} is not a new shard count (serving ${from})`,
          } as StartError
        }
        // One wave per old shard, or the one whole-set wave.
        const lastWave = wholeSet(from, to) ? wholeSetLead : from - 1
        yield* sql`
          INSERT INTO vigil_reshard_waves (from_count, to_count, old_shard, state)
          SELECT ${from}, ${to}, s, 'pending' FROM generate_series(0, ${lastWave}) AS s
          ON CONFLICT (from_count, to_count, old_shard) DO UPDATE SET
            state = CASE WHEN vigil_reshard_waves.state = 'done' THEN 'done' ELSE 'pending' END,
            attempts = 0, reason = NULL`
        yield* sql`
          UPDATE vigil_generation SET reshard_to = ${to}, state = 'running', reason = NULL,
            started_at = clock_timestamp(), finished_at = NULL
          WHERE id = 1`
        return { _tag: "started" as const, from }
      }),
    )
  })

/** Moves a wave from one of `from` states to `state` (and counts an attempt when it starts running). */
export const setWave = (
  key: { readonly from: number; readonly to: number; readonly shard: number },
  expected: ReadonlyArray<WaveState>,
  state: WaveState,
  reason?: string,
): Effect.Effect<boolean, SqlError.SqlError | Schema.SchemaError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ one: Schema.Number }),
      execute: () => sql`
        UPDATE vigil_reshard_waves SET state = ${state}, reason = ${reason ?? null},
          attempts = attempts + ${state === "running" ? 1 : 0}
        WHERE from_count = ${key.from} AND to_count = ${key.to} AND old_shard = ${key.shard}
          AND state IN ${sql.in(expected)}
        RETURNING 1::float8 AS one`,
    })(undefined)
    return rows.length > 0
  })

/** How many of the shards `ids` of `count` have a stored session. */
export const sessionsStored = (
  count: number,
  ids: ReadonlyArray<number>,
): Effect.Effect<number, SqlError.SqlError | Schema.SchemaError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ stored: Schema.Number }),
      execute: () => sql`
        SELECT count(*)::float8 AS stored FROM vigil_sessions
        WHERE shard_count = ${count} AND shard_id IN ${sql.in(ids)}`,
    })(undefined)
    return row?.stored ?? 0
  })

/** The reshard's end: `completed` makes `to` the serving count; otherwise it stops (partial, or rolled back). */
export const finish = (
  from: number,
  to: number,
  outcome: "completed" | "failed",
  reason?: string,
): Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    if (outcome === "completed") {
      yield* sql`
        UPDATE vigil_generation SET count = ${to}, reshard_to = NULL, state = 'idle', reason = NULL,
          finished_at = clock_timestamp()
        WHERE id = 1 AND count = ${from} AND reshard_to = ${to}`
      return
    }
    // Waves done stay done: their guilds are on the new count already (`partial`). None done:
    // the old count serves every guild as before (rolled back). A handed wave's old session is
    // done with: its new shards serve (from their saved sessions).
    yield* sql`
      UPDATE vigil_reshard_waves SET state = 'done'
      WHERE from_count = ${from} AND to_count = ${to} AND state = 'handed'`
    yield* sql`
      UPDATE vigil_generation SET
        state = CASE WHEN EXISTS (SELECT FROM vigil_reshard_waves
                     WHERE from_count = ${from} AND to_count = ${to} AND state = 'done') THEN 'partial' ELSE 'failed' END,
        reshard_to = CASE WHEN EXISTS (SELECT FROM vigil_reshard_waves
                     WHERE from_count = ${from} AND to_count = ${to} AND state = 'done') THEN ${to} ELSE NULL END,
        reason = ${reason ?? "failed"}, finished_at = clock_timestamp()
      WHERE id = 1 AND count = ${from} AND reshard_to = ${to}`
    yield* sql`
      UPDATE vigil_reshard_waves SET state = 'failed'
      WHERE from_count = ${from} AND to_count = ${to} AND state IN ('pending', 'go', 'running')`
  })

/**
 * How many of the shards `ids` of `count` a runner still holds (a lease not ended: serving, or
 * not yet noticed dead). None when no owner table exists (no fencing: nothing to wait for).
 */
export const held = (
  count: number,
  ids: ReadonlyArray<number>,
): Effect.Effect<number, SqlError.SqlError | Schema.SchemaError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    if (ids.length === 0) return 0
    const [table] = yield* SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ present: Schema.Boolean }),
      execute: () => sql`SELECT to_regclass('vigil_shard_owners') IS NOT NULL AS present`,
    })(undefined)
    if (table?.present !== true) return 0
    const [row] = yield* SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ held: Schema.Number }),
      execute: () => sql`
        SELECT count(*)::float8 AS held FROM vigil_shard_owners
        WHERE shard_count = ${count} AND shard_id IN ${sql.in(ids)} AND lease_until > clock_timestamp()`,
    })(undefined)
    return row?.held ?? 0
  })
