/**
 * The PostgreSQL connection every `@vigil/cluster` service runs on: `@effect/sql-pg`'s
 * `PgClient` (it also provides `SqlClient`), checked once at start so a wrong `DATABASE_URL`
 * or a database that refuses fails the layer at once with a typed error, instead of
 * surfacing later as a shard that never identifies. The connect attempt is bounded
 * (`connectTimeout`, default 5 s): an address that swallows packets cannot hang the start.
 */
import { PgClient } from "@effect/sql-pg"
import { Config, Duration, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseConfigError, DatabaseUnavailable } from "./ClusterError.ts"

export interface PgDatabaseOptions {
  /** `postgres://user:password@host:port/database`; a secret: it never reaches a message. */
  readonly url: Redacted.Redacted<string>
  /** Longest wait for a connection (TCP, TLS, authentication). Default 5 s. */
  readonly connectTimeout?: Duration.Input | undefined
  /** Pool size per process. Default 10. */
  readonly maxConnections?: number | undefined
}

/** `host:port/database` of a URL: what a message may say about the database. */
export const targetOf = (raw: string): Effect.Effect<string, DatabaseConfigError> => {
  if (!URL.canParse(raw)) return Effect.fail(new DatabaseConfigError({ reason: "not a URL" }))
  const url = new URL(raw)
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    return Effect.fail(
      new DatabaseConfigError({ reason: `the scheme must be postgres://, not ${url.protocol}//` }),
    )
  }
  if (url.hostname === "") return Effect.fail(new DatabaseConfigError({ reason: "no host" }))
  return Effect.succeed(`${url.hostname}:${url.port || "5432"}${url.pathname.length > 1 ? url.pathname : ""}`)
}

/**
 * The driver's message and the innermost cause's ("password authentication failed for user
 * ...", "connect ECONNREFUSED ...", "database ... does not exist"): PostgreSQL and Node name
 * the user, host and database in them, never the password.
 */
const reasonOf = (error: { readonly message: string; readonly cause?: unknown }): string => {
  let detail = ""
  let inner: unknown = error.cause
  for (let depth = 0; depth < 4 && typeof inner === "object" && inner !== null; depth++) {
    if (inner instanceof Error && inner.message !== error.message) detail = inner.message
    inner = (inner as { readonly cause?: unknown }).cause
  }
  return detail === "" ? error.message : `${error.message}: ${detail}`
}

export const layer = (
  options: PgDatabaseOptions,
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseConfigError | DatabaseUnavailable> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const target = yield* targetOf(Redacted.value(options.url))
      const timeout = Duration.fromInputUnsafe(options.connectTimeout ?? Duration.seconds(5))
      const unavailable = (reason: string) => new DatabaseUnavailable({ target, reason })
      // One round trip proves address, credentials and database; the outer timeout also
      // covers a server that accepts the connection and then says nothing.
      const probe = Layer.effectDiscard(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql`SELECT 1`
        }).pipe(
          Effect.timeoutOrElse({
            duration: Duration.sum(timeout, Duration.seconds(1)),
            orElse: () => Effect.fail(unavailable(`no answer within ${Duration.format(timeout)}`)),
          }),
          Effect.catchTag("SqlError", (error) => Effect.fail(unavailable(reasonOf(error)))),
        ),
      )
      const client = PgClient.make({
        url: options.url,
        connectTimeout: timeout,
        maxConnections: options.maxConnections ?? 10,
        applicationName: "vigil",
      }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(unavailable(reasonOf(error)))))
      return Layer.provideMerge(probe, PgClient.layerFrom(client))
    }),
  )

/** `layer` with the URL from `DATABASE_URL`. */
export const layerConfig = (
  options: Omit<PgDatabaseOptions, "url"> = {},
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, DatabaseConfigError | DatabaseUnavailable> =>
  Layer.unwrap(
    Config.Redacted("DATABASE_URL").pipe(
      Effect.mapError(() => new DatabaseConfigError({ reason: "DATABASE_URL is not set" })),
      Effect.map((url) => layer({ ...options, url })),
    ),
  )
