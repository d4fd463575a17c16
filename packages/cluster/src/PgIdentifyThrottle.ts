/**
 * An `IdentifyThrottle` shared by every process of a bot, on PostgreSQL: one Identify per
 * `shard_id % max_concurrency` bucket per window (5 s), and the daily `session_start_limit`
 * as one budget, whichever process or machine the shards run on.
 *
 * Turns of a bucket are `windowMillis + marginMillis` apart (5 s + 250 ms): the gateway counts
 * the window from each identify's arrival, so a later identify with a quicker trip (another
 * process, another network path) must not arrive inside it.
 *
 * Turns are granted on the database's clock (`clock_timestamp()`), never a machine's: one row
 * per bucket holds the instant its next turn opens, and a turn is taken by one atomic
 * `UPDATE … WHERE next_at <= clock_timestamp()`, in the same transaction as the budget's guarded
 * decrement (so a spent budget consumes no turn). A waiter that loses sleeps exactly until
 * the turn it saw opens (as the database computed it), then tries again: one round trip per
 * turn that opens, never a busy loop. Within a process, one fiber per bucket asks the
 * database at a time; across processes, turns go to whoever asks first once a turn opens.
 *
 * A database error while waiting is logged and the attempt repeated after `retryInterval`
 * (1 s): a shard must not identify without a turn.
 */
import { GatewayError, IdentifyThrottle } from "@vigil/gateway"
import { Data, Duration, Effect, Layer, Schema, Semaphore } from "effect"
import { SqlClient, type SqlError, SqlSchema } from "effect/sql"
import { migrate } from "./internal/migrate.ts"

export interface PgIdentifyThrottleOptions extends IdentifyThrottle.IdentifyThrottleOptions {
  /** Which bot's turns and budget these are, when several bots share a database. Default "default". */
  readonly name?: string | undefined
  /** Pause between attempts while the database fails. Default 1 s. */
  readonly retryInterval?: Duration.Input | undefined
}

export const migrations = [
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_identify_buckets (
      name text NOT NULL,
      max_concurrency integer NOT NULL,
      bucket integer NOT NULL,
      next_at timestamptz NOT NULL,
      PRIMARY KEY (name, max_concurrency, bucket)
    )`,
  (sql: SqlClient.SqlClient) => sql`
    CREATE TABLE IF NOT EXISTS vigil_identify_budget (
      name text PRIMARY KEY,
      total integer NOT NULL,
      remaining integer NOT NULL CHECK (remaining >= 0),
      reset_at timestamptz NOT NULL
    )`,
]

/** What one attempt found: the turn taken, the turn busy for `waitMillis`, or the budget spent. */
type Attempt =
  | { readonly _tag: "Taken" }
  | { readonly _tag: "Busy"; readonly waitMillis: number }
  | { readonly _tag: "Spent"; readonly resetAfterMillis: number }

const Value = Schema.Struct({ value: Schema.Number })

/** Fails the attempt's transaction, so a spent budget rolls the bucket's turn back. */
class BudgetSpent extends Data.TaggedError("BudgetSpent")<{ readonly resetAfterMillis: number }> {}

export const make = Effect.fnUntraced(function* (options: PgIdentifyThrottleOptions) {
  const sql = yield* SqlClient.SqlClient
  const name = options.name ?? "default"
  const maxConcurrency = Math.max(1, options.maxConcurrency)
  const spacingMillis =
    (options.windowMillis ?? 5_000) +
    Math.max(0, options.marginMillis ?? IdentifyThrottle.defaultMarginMillis)
  const retryInterval = Duration.fromInputUnsafe(options.retryInterval ?? Duration.seconds(1))
  const limit = options.sessionStartLimit
  yield* migrate(migrations)

  const seed = sql`
    INSERT INTO vigil_identify_buckets (name, max_concurrency, bucket, next_at)
    SELECT ${name}, ${maxConcurrency}, b, '-infinity' FROM generate_series(0, ${maxConcurrency - 1}) AS b
    ON CONFLICT DO NOTHING`

  yield* seed
  if (limit) {
    // Every process brings the figures it fetched from Discord; the row keeps the lowest
    // remaining count (another process may have spent some since), until its reset is due.
    yield* sql`
      INSERT INTO vigil_identify_budget (name, total, remaining, reset_at)
      VALUES (${name}, ${limit.total}, ${Math.max(0, limit.remaining)},
              clock_timestamp() + ${limit.resetAfterMillis} * interval '1 millisecond')
      ON CONFLICT (name) DO UPDATE SET
        total = excluded.total,
        remaining = CASE WHEN vigil_identify_budget.reset_at <= clock_timestamp() THEN excluded.remaining
                         ELSE least(vigil_identify_budget.remaining, excluded.remaining) END,
        reset_at = CASE WHEN vigil_identify_budget.reset_at <= clock_timestamp() THEN excluded.reset_at
                        ELSE vigil_identify_budget.reset_at END`
  }

  // Every query here answers numbers in one column, `value`.
  const values = (execute: () => Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
    SqlSchema.findAll({ Request: Schema.Void, Result: Value, execute })(undefined)

  // The turn is taken only if it is open; else the same statement says how long it stays shut.
  // (A taker that queued behind another's row lock finds the turn gone and reads the wait from
  // its older snapshot, possibly 0: hence the explicit `taken`.)
  const takeTurn = (bucket: number) =>
    SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ taken: Schema.Boolean, value: Schema.Number }),
      execute: () => sql`
        WITH taken AS (
          UPDATE vigil_identify_buckets
          SET next_at = clock_timestamp() + ${spacingMillis} * interval '1 millisecond'
          WHERE name = ${name} AND max_concurrency = ${maxConcurrency} AND bucket = ${bucket}
            AND next_at <= clock_timestamp()
          RETURNING true AS taken, 0::float8 AS value
        )
        SELECT taken, value FROM taken
        UNION ALL
        SELECT false, greatest(extract(epoch FROM next_at - clock_timestamp()) * 1000, 0)::float8
        FROM vigil_identify_buckets
        WHERE name = ${name} AND max_concurrency = ${maxConcurrency} AND bucket = ${bucket}
          AND NOT EXISTS (SELECT FROM taken)`,
    })(undefined)

  // The daily budget: a guarded decrement, refilled once its reset is due.
  const takeBudget = values(
    () => sql`
      UPDATE vigil_identify_budget SET
        remaining = CASE WHEN reset_at <= clock_timestamp() THEN total ELSE remaining END - 1,
        reset_at = CASE WHEN reset_at <= clock_timestamp() THEN clock_timestamp() + interval '1 day'
                        ELSE reset_at END
      WHERE name = ${name} AND (remaining > 0 OR (reset_at <= clock_timestamp() AND total > 0))
      RETURNING 0::float8 AS value`,
  )
  const resetAfter = values(
    () => sql`
      SELECT greatest(extract(epoch FROM reset_at - clock_timestamp()) * 1000, 0)::float8 AS value
      FROM vigil_identify_budget WHERE name = ${name}`,
  )

  const attempt = (bucket: number): Effect.Effect<Attempt, SqlError.SqlError | Schema.SchemaError> =>
    sql
      .withTransaction(
        Effect.gen(function* () {
          const turn = yield* takeTurn(bucket)
          if (turn.length === 0) {
            // The bucket's row is gone (deleted by hand?): put it back and try again.
            yield* seed
            return { _tag: "Busy", waitMillis: 0 } as const
          }
          if (!turn[0]!.taken) return { _tag: "Busy", waitMillis: turn[0]!.value } as const
          if (limit && (yield* takeBudget).length === 0) {
            // Fail to roll the turn back: a spent budget must not use up the bucket's turn.
            return yield* new BudgetSpent({ resetAfterMillis: (yield* resetAfter)[0]?.value ?? 0 })
          }
          return { _tag: "Taken" } as const
        }),
      )
      .pipe(
        Effect.catchTag("BudgetSpent", ({ resetAfterMillis }) =>
          Effect.succeed({ _tag: "Spent", resetAfterMillis } as const),
        ),
      )

  // A database error is one more reason to wait: the shard must not identify without a turn.
  const attemptOrWait = (bucket: number): Effect.Effect<Attempt> =>
    attempt(bucket).pipe(
      Effect.catch((error) =>
        Effect.as(
          Effect.logWarning(
            `identify throttle: the database failed (${error.message}); retrying in ${Duration.format(retryInterval)}`,
          ),
          { _tag: "Busy", waitMillis: Duration.toMillis(retryInterval) } as const,
        ),
      ),
    )

  const locks = Array.from({ length: maxConcurrency }, () => Semaphore.makeUnsafe(1))

  const wait = (shardId: number): Effect.Effect<void, GatewayError.SessionStartLimitExhausted> => {
    const bucket = shardId % maxConcurrency
    return Semaphore.withPermits(
      locks[bucket]!,
      1,
    )(
      Effect.gen(function* () {
        while (true) {
          const result = yield* attemptOrWait(bucket)
          switch (result._tag) {
            case "Taken":
              return
            case "Busy":
              // Never sooner than 10 ms: a turn seen open but lost to a concurrent taker.
              yield* Effect.sleep(Duration.millis(Math.max(10, Math.ceil(result.waitMillis))))
              break
            case "Spent":
              if (options.onExhausted !== "wait") {
                return yield* new GatewayError.SessionStartLimitExhausted({
                  resetAfterMillis: result.resetAfterMillis,
                })
              }
              yield* Effect.logWarning(
                `identify budget spent; waiting ${Math.ceil(result.resetAfterMillis)} ms for its reset`,
              )
              yield* Effect.sleep(Duration.millis(Math.max(Math.ceil(result.resetAfterMillis), 1_000)))
          }
        }
      }),
    )
  }

  // What the database said last: the answer when it cannot be asked.
  let lastRemaining = limit ? limit.remaining : Number.POSITIVE_INFINITY
  const remaining = limit
    ? values(
        () => sql`
          SELECT CASE WHEN reset_at <= clock_timestamp() THEN total ELSE remaining END::float8 AS value
          FROM vigil_identify_budget WHERE name = ${name}`,
      ).pipe(
        Effect.map((rows) => {
          lastRemaining = rows[0]?.value ?? lastRemaining
          return lastRemaining
        }),
        Effect.catch((error) =>
          Effect.as(
            Effect.logWarning(`identify throttle: could not read the budget: ${error.message}`),
            lastRemaining,
          ),
        ),
      )
    : Effect.succeed(Number.POSITIVE_INFINITY)

  return IdentifyThrottle.IdentifyThrottle.of({ wait, remaining })
})

/** The cluster-wide identify throttle on the `SqlClient` in context; creates its tables. */
export const layer = (options: PgIdentifyThrottleOptions) =>
  Layer.effect(IdentifyThrottle.IdentifyThrottle)(make(options))
