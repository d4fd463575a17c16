/**
 * One runner of a bot's cluster, on Node, wired whole: the cluster engine over sockets
 * (`NodeClusterSocket`, runner storage on PostgreSQL), fencing (`PgShardOwners`), the
 * cluster-wide identify limiter (`PgIdentifyThrottle`), cluster health (`ClusterHealth`) and
 * one singleton per shard (`ShardSingleton`, with `ShardCommands`). Start the same program on
 * every machine with its own `address`; the cluster spreads the shards over the runners.
 *
 * Start-up fails with a typed error, never a hang: `DatabaseConfigError` (a bad
 * `DATABASE_URL`), `DatabaseUnavailable` (refused, unreachable, wrong password; bounded by the
 * connect timeout), `RunnerAddressInUse` (the port is taken), `FencingConfigError`.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { type Config, Duration, Effect, Layer, Option } from "effect"
import { RunnerAddress, type Sharding } from "effect/cluster"
import type { SqlError } from "effect/sql"
import {
  type DatabaseConfigError,
  type DatabaseUnavailable,
  type FencingConfigError,
  RunnerAddressInUse,
} from "./ClusterError.ts"
import * as ClusterHealth from "./ClusterHealth.ts"
import * as ClusterReshard from "./ClusterReshard.ts"
import * as PgDatabase from "./PgDatabase.ts"
import * as PgIdentifyThrottle from "./PgIdentifyThrottle.ts"
import * as PgShardOwners from "./PgShardOwners.ts"
import * as ShardSingleton from "./ShardSingleton.ts"

/**
 * How fast a dead runner's shards move, and how a cut-off runner fences itself first:
 * `renewInterval < fenceAfter < shardLockExpiration`, with a lock refresh left between the
 * last two. `kill -9` of a runner → its shards run elsewhere after about the expiry.
 */
export interface Timings {
  readonly shardLockExpiration: Duration.Input
  readonly shardLockRefreshInterval: Duration.Input
  readonly fenceAfter: Duration.Input
  readonly renewInterval: Duration.Input
  /** How often a runner re-reads the shard assignments and pings the others. */
  readonly refreshAssignmentsInterval: Duration.Input
  readonly runnerHealthCheckInterval: Duration.Input
  /** How often lost cluster shards (after a database restart) are retaken. */
  readonly entityMessagePollInterval: Duration.Input
  /**
   * How long the gateway may hold a silent socket: a shard taken from a runner that may still be
   * alive (partitioned, frozen) and never reported its socket closed waits this long past that
   * runner's lease, so the gateway never sees two sockets (`PgShardOwners`). Default 90 s.
   */
  readonly gatewayDropAfter: Duration.Input
}

/** Expiry 6 s: a kill -9 fails over in ~4–6 s; a runner stalled up to 4 s keeps its shards. */
export const defaultTimings: Timings = {
  shardLockExpiration: Duration.seconds(6),
  shardLockRefreshInterval: Duration.seconds(2),
  fenceAfter: Duration.seconds(4),
  renewInterval: Duration.seconds(1),
  refreshAssignmentsInterval: Duration.seconds(1),
  runnerHealthCheckInterval: Duration.seconds(2),
  entityMessagePollInterval: Duration.seconds(1),
  gatewayDropAfter: Duration.seconds(90),
}

/** Expiry 3 s: a kill -9 fails over in ~3.5 s, but a stall over 2 s fences the runner. */
export const fastTimings: Timings = {
  shardLockExpiration: Duration.seconds(3),
  shardLockRefreshInterval: Duration.seconds(1),
  fenceAfter: Duration.seconds(2),
  renewInterval: Duration.millis(500),
  refreshAssignmentsInterval: Duration.millis(500),
  runnerHealthCheckInterval: Duration.seconds(1),
  entityMessagePollInterval: Duration.millis(500),
  gatewayDropAfter: Duration.seconds(90),
}

export interface ClusterRunnerOptions<E, R> extends ShardSingleton.ShardSingletonOptions<E, R> {
  /** Where the other runners reach this one (unique per runner; also its name in health rows). */
  readonly address: { readonly host: string; readonly port: number }
  /** Where to listen, when it differs from `address` (e.g. 0.0.0.0 in a container). */
  readonly listen?: { readonly host: string; readonly port: number } | undefined
  readonly database: PgDatabase.PgDatabaseOptions
  /** The bot's `max_concurrency` (from `GET /gateway/bot`): identifies per 5 s, cluster-wide. */
  readonly maxConcurrency: number
  readonly timings?: Partial<Timings> | undefined
  /** How often each shard reports to `ClusterHealth`. Default 2 s. */
  readonly healthInterval?: Duration.Input | undefined
  /**
   * Given (even `{}`): the shard count is the cluster's, in PostgreSQL, and `ClusterReshard.reshard`
   * changes it under traffic (see `ClusterReshard`); `shards` only gives the first count.
   */
  readonly resharding?: ClusterReshard.ReshardingOptions | undefined
}

export type ClusterRunnerError =
  | DatabaseConfigError
  | DatabaseUnavailable
  | RunnerAddressInUse
  | FencingConfigError
  | SqlError.SqlError
  /** The engine also reads generic variables (`HOST`, `PORT`, ...): an unparsable one. */
  | Config.ConfigError

/** `host:port` */
export const addressOf = (address: { readonly host: string; readonly port: number }): string =>
  `${address.host}:${address.port}`

/**
 * The runner: joins the cluster and runs the shards the cluster places here. Provides
 * `Sharding` (for `ShardCommands.client`), `ClusterHealth` (to read the cluster's health), and
 * the `SqlClient` and `IdentifyThrottle` that `ClusterReshard.reshard` needs.
 */
export const layer = <E, R>(options: ClusterRunnerOptions<E, R>) => {
  const timings = { ...defaultTimings, ...options.timings }
  const owner = addressOf(options.address)
  const listen = options.listen ?? options.address
  const cluster = NodeClusterSocket.layer({
    storage: "sql",
    shardingConfig: {
      runnerAddress: Option.some(RunnerAddress.make(options.address.host, options.address.port)),
      runnerListenAddress: Option.some(RunnerAddress.make(listen.host, listen.port)),
      shardLockExpiration: timings.shardLockExpiration,
      shardLockRefreshInterval: timings.shardLockRefreshInterval,
      refreshAssignmentsInterval: timings.refreshAssignmentsInterval,
      runnerHealthCheckInterval: timings.runnerHealthCheckInterval,
      entityMessagePollInterval: timings.entityMessagePollInterval,
    },
  }).pipe(
    // (A recovery layer's services are intersected with the original's: it must claim them.)
    Layer.catchTag("SocketServerError", (error) =>
      Layer.effectContext<Sharding.Sharding, RunnerAddressInUse, never>(
        Effect.fail(
          new RunnerAddressInUse({
            address: addressOf(listen),
            // e.g. "listen EADDRINUSE: address already in use 127.0.0.1:34000"
            reason: error.reason.cause instanceof Error ? error.reason.cause.message : error.message,
          }),
        ),
      ),
    ),
  )
  const services = Layer.mergeAll(
    PgShardOwners.layer({
      shardLockExpiration: timings.shardLockExpiration,
      fenceAfter: timings.fenceAfter,
      renewInterval: timings.renewInterval,
      gatewayDropAfter: timings.gatewayDropAfter,
      owner,
    }),
    PgIdentifyThrottle.layer({ maxConcurrency: options.maxConcurrency }),
    ClusterHealth.layer({ owner, interval: options.healthInterval }),
  )
  const shards = options.resharding ? ClusterReshard.layer(options) : ShardSingleton.layer(options)
  return shards.pipe(
    Layer.provideMerge(Layer.mergeAll(cluster, services)),
    // Also provided: `ClusterReshard.reshard` (and an app's own queries) use the runner's pool.
    Layer.provideMerge(PgDatabase.layer(options.database)),
    Layer.satisfiesErrorType<ClusterRunnerError>(),
  )
}
