/**
 * The errors of `@vigil/cluster`. Messages name the database by host, port and database name
 * only: a `DATABASE_URL` carries a password, and no part of it but those reaches a message.
 */
import { Schema } from "effect"

/** `DATABASE_URL` is not a `postgres://` URL (missing, unparsable, wrong scheme). */
export class DatabaseConfigError extends Schema.TaggedError<DatabaseConfigError>()("DatabaseConfigError", {
  reason: Schema.String,
}) {
  override get message() {
    return `DATABASE_URL is not usable: ${this.reason}`
  }
}

/** The database did not accept us in time: refused, unreachable, wrong password, no such database. */
export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()("DatabaseUnavailable", {
  /** `host:port/database`, never the credentials. */
  target: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `PostgreSQL at ${this.target} is unavailable: ${this.reason}`
  }
}

/** Fencing timings that cannot keep a shard on one runner (see `PgShardOwners`). */
export class FencingConfigError extends Schema.TaggedError<FencingConfigError>()("FencingConfigError", {
  reason: Schema.String,
}) {
  override get message() {
    return `fencing is misconfigured: ${this.reason}`
  }
}
