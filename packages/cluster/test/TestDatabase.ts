/**
 * A database of its own for each test, made on the server `DATABASE_URL` names (scripts/dev.sh
 * provides one: scripts/postgres.sh) and dropped when the test's scope closes, so tests never
 * see each other's rows, never depend on a port, and leave nothing behind.
 */
import * as crypto from "node:crypto"
import { PgDatabase } from "@vigil/cluster"
import { Context, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"

const serverUrl = (): string => {
  const url = process.env["DATABASE_URL"]
  if (url === undefined || url === "") {
    throw new Error("DATABASE_URL is not set: run the tests through scripts/dev.sh (it starts PostgreSQL)")
  }
  return url
}

/** Runs one statement on the server's own database, on a connection of its own. */
const onServer = (statement: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(statement)
  }).pipe(Effect.provide(PgDatabase.layer({ url: Redacted.make(serverUrl()), maxConnections: 1 })))

export class TestDatabase extends Context.Service<
  TestDatabase,
  { readonly url: Redacted.Redacted<string> }
>()("test/TestDatabase") {}

/** A fresh, empty database; its URL in `TestDatabase`. */
export const fresh: Layer.Layer<TestDatabase> = Layer.effect(TestDatabase)(
  Effect.gen(function* () {
    const name = `vigil_test_${crypto.randomBytes(6).toString("hex")}`
    yield* Effect.acquireRelease(onServer(`CREATE DATABASE ${name}`), () =>
      onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(Effect.orDie),
    )
    const url = new URL(serverUrl())
    url.pathname = `/${name}`
    return { url: Redacted.make(url.toString()) }
  }).pipe(Effect.orDie),
)

/** A client (its own pool) on the test's database. */
export const client = (options: { readonly maxConnections?: number } = {}) =>
  Layer.unwrap(TestDatabase.useSync(({ url }) => PgDatabase.layer({ url, ...options }))).pipe(Layer.orDie)

/** A fresh database and a client on it. */
export const layer = client().pipe(Layer.provideMerge(fresh))
