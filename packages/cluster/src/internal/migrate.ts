/**
 * Tables are created on first use, idempotently. Two processes starting at once would race
 * in `CREATE TABLE IF NOT EXISTS` (PostgreSQL can fail one with a duplicate type), so the
 * statements run in one transaction under a transaction-scoped advisory lock.
 */
import { Effect } from "effect"
import { SqlClient, type SqlError } from "effect/sql"

export const migrate = (
  statements: ReadonlyArray<(sql: SqlClient.SqlClient) => Effect.Effect<unknown, SqlError.SqlError>>,
): Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SELECT pg_advisory_xact_lock(hashtext('vigil-cluster-migrations'))`
        for (const statement of statements) yield* statement(sql)
      }),
    )
  })
