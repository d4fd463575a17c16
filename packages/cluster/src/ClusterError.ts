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

/** A command reached the runner its shard maps to, but the shard is not running there (moving, or stopped). */
export class ShardNotRunning extends Schema.TaggedError<ShardNotRunning>()("ShardNotRunning", {
  shard: Schema.Tuple([Schema.Int, Schema.Int]),
}) {
  override get message() {
    return `shard ${this.shard[0]}/${this.shard[1]} is not running on the runner that owns it in the cluster (it is moving or stopped)`
  }
}

/** A command could not be delivered through the cluster (no runner holds the shard, mailbox full, ...). */
export class ShardUnreachable extends Schema.TaggedError<ShardUnreachable>()("ShardUnreachable", {
  shard: Schema.Tuple([Schema.Int, Schema.Int]),
  reason: Schema.String,
}) {
  override get message() {
    return `shard ${this.shard[0]}/${this.shard[1]} is unreachable through the cluster: ${this.reason}`
  }
}

/** The runner's address (host:port) is taken by another process. */
export class RunnerAddressInUse extends Schema.TaggedError<RunnerAddressInUse>()("RunnerAddressInUse", {
  address: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `the runner address ${this.address} cannot be listened on: ${this.reason}`
  }
}

/** A cluster reshard that was not started (see `ClusterReshard.reshard`). */
export class ClusterReshardRefused extends Schema.TaggedError<ClusterReshardRefused>()(
  "ClusterReshardRefused",
  {
    reason: Schema.Literals(["in-progress", "same-count", "budget", "no-cluster"]),
    detail: Schema.String,
  },
) {
  override get message() {
    return `cluster reshard refused (${this.reason}): ${this.detail}`
  }
}

/** A cluster reshard that stopped before its end. */
export class ClusterReshardFailed extends Schema.TaggedError<ClusterReshardFailed>()("ClusterReshardFailed", {
  from: Schema.Int,
  to: Schema.Int,
  reason: Schema.String,
  /**
   * True: no wave was done, the old count serves every guild as before. False: some old
   * shards' guilds moved to the new count already (each guild on one shard); `reshard(to)`
   * continues with the rest.
   */
  rolledBack: Schema.Boolean,
}) {
  override get message() {
    return `cluster reshard ${this.from} → ${this.to} failed (${this.reason}); ${
      this.rolledBack ? "rolled back" : "stopped partway: both counts serve, each guild on one shard"
    }`
  }
}
