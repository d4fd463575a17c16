/**
 * The cluster-wide identify throttle against a real PostgreSQL, with clients on separate pools
 * (separate connections, as separate runners have) and in separate OS processes. A trigger in
 * the test's database records every granted turn (`next_at`, set to the database's clock plus
 * the window when a turn is taken) and every attempt, so the checks are on the database's clock.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { PgIdentifyThrottle } from "@vigil/cluster"
import { type GatewayError, IdentifyThrottle } from "@vigil/gateway"
import { Effect, Exit, Fiber, Layer, Logger, Redacted, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import { migrate } from "../src/internal/migrate.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** A throttle on a pool of its own, as another runner's would be. */
const client =
  (options: PgIdentifyThrottle.PgIdentifyThrottleOptions) =>
  <A, E, R>(use: (throttle: IdentifyThrottle.IdentifyThrottleService) => Effect.Effect<A, E, R>) =>
    IdentifyThrottle.IdentifyThrottle.use(use).pipe(
      Effect.provide(PgIdentifyThrottle.layer(options).pipe(Layer.provide(TestDatabase.client()))),
    )

/** Records grants and attempts in the test's database; returns readers for them. */
const audit = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* migrate(PgIdentifyThrottle.migrations)
  yield* sql`CREATE TABLE grants (bucket integer, next_at timestamptz)`
  yield* sql`CREATE TABLE attempts (at timestamptz)`
  yield* sql.unsafe(`CREATE FUNCTION record_grant() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO grants VALUES (NEW.bucket, NEW.next_at); RETURN NEW; END $$`)
  yield* sql.unsafe(`CREATE FUNCTION record_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO attempts VALUES (clock_timestamp()); RETURN NULL; END $$`)
  yield* sql`CREATE TRIGGER record_grant AFTER UPDATE ON vigil_identify_buckets
             FOR EACH ROW EXECUTE FUNCTION record_grant()`
  yield* sql`CREATE TRIGGER record_attempt AFTER UPDATE ON vigil_identify_buckets
             FOR EACH STATEMENT EXECUTE FUNCTION record_attempt()`
  const grants = SqlSchema.findAll({
    Request: Schema.Void,
    Result: Schema.Struct({ bucket: Schema.Int, micros: Schema.Number }),
    execute: () => sql`
      SELECT bucket, (extract(epoch FROM next_at) * 1000000)::float8 AS micros FROM grants ORDER BY bucket, next_at`,
  })(undefined).pipe(Effect.orDie)
  const attempts = sql`SELECT count(*)::float8 AS n FROM attempts`.pipe(
    Effect.map((rows) => Number((rows[0] as { n: number }).n)),
    Effect.orDie,
  )
  return { grants, attempts }
})

/** Gaps between consecutive turns of one bucket, in milliseconds on the database's clock. */
const gapsOf = (grants: ReadonlyArray<{ bucket: number; micros: number }>, bucket: number) => {
  const times = grants.filter((grant) => grant.bucket === bucket).map((grant) => grant.micros)
  return times.slice(1).map((time, i) => (time - times[i]!) / 1000)
}

const limit = (remaining: number, resetAfterMillis = 3_600_000) => ({ total: 5, remaining, resetAfterMillis })

describe("PgIdentifyThrottle", () => {
  it.live("clients on separate connections: one turn per bucket per window, buckets apart", () =>
    Effect.gen(function* () {
      const { grants } = yield* audit
      const options = { maxConcurrency: 2, windowMillis: 1_000 }
      // Shards 0, 2 and 4 share bucket 0; shard 1 is alone in bucket 1.
      const started = Date.now()
      let bucketOneAfter = Number.NaN
      yield* Effect.all(
        [
          ...[0, 2, 4].map((shard) =>
            client(options)((throttle) => Effect.andThen(throttle.wait(shard), throttle.wait(shard))),
          ),
          client(options)((throttle) =>
            Effect.andThen(
              throttle.wait(1),
              Effect.sync(() => {
                bucketOneAfter = Date.now() - started
              }),
            ),
          ),
        ],
        { concurrency: "unbounded" },
      )
      const all = yield* grants
      const gaps = gapsOf(all, 0)
      assert.strictEqual(gaps.length, 5, "six turns in bucket 0")
      for (const gap of gaps) {
        assert.isAtLeast(gap, 1_000, "two turns of one bucket within the window")
        assert.isBelow(gap, 2_000, "a waiter woke late")
      }
      assert.strictEqual(all.filter((grant) => grant.bucket === 1).length, 1)
      assert.isBelow(bucketOneAfter, 1_000, "bucket 1 waited for bucket 0")
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("a waiter sleeps until its turn opens: one round trip to learn it, one to take it", () =>
    Effect.gen(function* () {
      const { grants, attempts } = yield* audit
      const options = { maxConcurrency: 1, windowMillis: 3_000 }
      yield* client(options)((throttle) => throttle.wait(0))
      yield* client(options)((throttle) => throttle.wait(0))
      const [gap] = gapsOf(yield* grants, 0)
      // The window plus the default 250 ms margin (the gateway counts from each identify's arrival).
      assert.isAtLeast(gap ?? 0, 3_250)
      assert.isBelow(gap ?? Number.POSITIVE_INFINITY, 4_000)
      assert.isAtMost(yield* attempts, 4, "the waiter polled instead of sleeping")
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("the daily budget is one atomic row: concurrent clients never take it below zero", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const options = { maxConcurrency: 8, sessionStartLimit: limit(3) }
      const outcomes = yield* Effect.all(
        Array.from({ length: 8 }, (_, shard) =>
          client(options)((throttle) => Effect.exit(throttle.wait(shard))),
        ),
        { concurrency: "unbounded" },
      )
      const granted = outcomes.filter(Exit.isSuccess).length
      const exhausted = outcomes.filter(
        (exit) =>
          Exit.isFailure(exit) &&
          (exit.cause.reasons[0] as { error?: GatewayError.SessionStartLimitExhausted })?.error?._tag ===
            "SessionStartLimitExhausted",
      ).length
      assert.deepStrictEqual([granted, exhausted], [3, 5])
      const [row] = (yield* sql`SELECT remaining FROM vigil_identify_budget`) as ReadonlyArray<{
        remaining: number
      }>
      assert.strictEqual(row?.remaining, 0)
      assert.strictEqual(yield* client(options)((throttle) => throttle.remaining), 0)
      // A spent budget takes no turn: the refused buckets are still open.
      const [open] = (yield* sql`
        SELECT count(*)::float8 AS n FROM vigil_identify_buckets WHERE next_at = '-infinity'`) as ReadonlyArray<{
        n: number
      }>
      assert.strictEqual(open?.n, 5)
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("a spent budget waits for its reset on the database's clock, then refills", () =>
    Effect.gen(function* () {
      const options = { maxConcurrency: 1, sessionStartLimit: limit(0, 1_500), onExhausted: "wait" as const }
      const started = Date.now()
      const remaining = yield* client(options)((throttle) =>
        Effect.andThen(throttle.wait(0), throttle.remaining),
      )
      assert.isAtLeast(Date.now() - started, 1_300)
      assert.strictEqual(remaining, 4)
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("a database error while waiting is logged and retried, and takes no turn", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { grants } = yield* audit
      const options = {
        maxConcurrency: 1,
        windowMillis: 500,
        sessionStartLimit: limit(5),
        retryInterval: "200 millis" as const,
      }
      const logs: Array<string> = []
      const capture = Logger.make(({ message }) => void logs.push(String(message)))
      yield* client(options)((throttle) =>
        Effect.gen(function* () {
          yield* throttle.wait(0)
          yield* sql`ALTER TABLE vigil_identify_budget RENAME TO vigil_identify_budget_away`
          const waiter = yield* Effect.forkChild(throttle.wait(0))
          yield* Effect.sleep("1500 millis")
          assert.isUndefined(waiter.pollUnsafe(), "identified without its budget")
          yield* sql`ALTER TABLE vigil_identify_budget_away RENAME TO vigil_identify_budget`
          yield* Fiber.join(waiter).pipe(Effect.timeout("3 seconds"))
        }),
      ).pipe(Effect.provide(Logger.layer([capture])))
      const failures = logs.filter((line) => line.includes("the database failed")).length
      assert.isAtLeast(failures, 3)
      assert.isAtMost(failures, 8, "retried faster than the retry interval")
      assert.strictEqual((yield* grants).length, 2, "a failed attempt took a turn")
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("two OS processes share the turns and the budget", () =>
    Effect.gen(function* () {
      const { grants } = yield* audit
      const { url } = yield* TestDatabase.TestDatabase
      const outputs = yield* Effect.all([runClient(url), runClient(url)], { concurrency: "unbounded" })
      const lines = outputs
        .join("")
        .split("\n")
        .filter((line) => line.startsWith("turn: "))
        .map((line) => line.slice("turn: ".length))
        .sort()
      assert.deepStrictEqual(lines, ["exhausted", "granted", "granted", "granted", "granted", "granted"])
      const gaps = gapsOf(yield* grants, 0)
      assert.strictEqual(gaps.length, 4)
      for (const gap of gaps) assert.isAtLeast(gap, 1_000)
    }).pipe(Effect.provide(TestDatabase.layer)),
  )
})

const fixture = path.join(import.meta.dirname, "fixtures", "identify-client.ts")

/** Runs the fixture (3 turns of shard 0, window 1 s, 5 identifies left) and returns its output. */
const runClient = (url: Redacted.Redacted<string>) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, ["--conditions=@vigil/source", fixture, "0", "3", "1000", "5"], {
        env: { ...process.env, DATABASE_URL: Redacted.value(url) },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    ),
    (child: ChildProcess) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL")),
  ).pipe(
    Effect.flatMap((child) =>
      Effect.callback<string, Error>((resume) => {
        let out = ""
        let err = ""
        child.stdout?.on("data", (chunk) => (out += chunk))
        child.stderr?.on("data", (chunk) => (err += chunk))
        child.on("exit", (code) =>
          resume(code === 0 ? Effect.succeed(out) : Effect.fail(new Error(`client exited ${code}: ${err}`))),
        )
      }),
    ),
    Effect.timeout("20 seconds"),
    Effect.orDie,
  )
