/**
 * Resharding a cluster N → M under traffic, with no downtime: every guild's events exactly
 * once and in order (delivered to the app on whichever runner), identifies paced cluster-wide,
 * and every runner agreeing on the count, also one that starts or restarts during or after it.
 *
 * The count is a row in PostgreSQL (`internal/Generation.ts`). Each runner reads it every
 * `pollInterval` and registers one singleton per shard of the serving count, and of the
 * target count while a reshard runs (dynamic singletons: a count no longer used is
 * unregistered). What a singleton does follows the row (`Generation.roleOf`): serve its shard
 * (as `ShardSingleton` does), wait (a new shard whose guilds have not moved yet), carry out
 * its wave (an old shard), or nothing (retired).
 *
 * When M is a multiple of N (what Discord requires of large bots), old shard s is replaced by
 * new shards s, s + N, …, s + (k − 1)N in a wave carried out inside s's singleton, on
 * whatever runner holds it (`internal/Wave.ts`: the gateway's per-guild handover, then the
 * new sessions saved under `[x, M]` for their own singletons to RESUME).
 * A coordinator (one more singleton) lets `parallelWaves` waves run at once (k extra
 * connections each), retries a failed wave (`waveAttempts`) and, once every wave is done,
 * makes M the serving count; the `[*, N]` singletons then end. A wave whose runner stops or
 * dies is carried out again (or, past its old shard's logout, committed) where the cluster
 * moves its singleton. Triggers: `reshard(M)` from any runner, with `autoReshard` a 4011,
 * and with `checkEvery` the coordinator's periodic look at `/gateway/bot` (both to a
 * multiple). `ClusterMetrics` counts how reshards end and shows the count.
 *
 * Any other M (3 → 5, or fewer shards) is one whole-set wave: a new shard's guilds come from
 * several old shards, and the handover needs both copies of an event in one process. So old
 * shard 0's singleton carries it out (`ShardManager.reshard`'s whole-set path) with every old
 * shard resumed beside every new one in its process, once the other old shards' singletons
 * have stood aside (left gracefully, their sessions saved); then the new sessions go on to
 * their `[x, M]` singletons as in a wave. The cost: N + M connections and all the bot's
 * traffic in that one runner while it runs (seconds: the new shards' identifies, paced by
 * the cluster's throttle, and the handover), so that runner must have room for it.
 *
 * A whole-set wave stopped or killed before it was marked handed runs again where
 * old shard 0's singleton moves (the old shards resumed from what the app had finished, or,
 * killed, from before the wave); a runner that dies holding stood-aside shards' leases delays
 * it by the lease (and, if its process is not provably gone, the gateway's socket timeout:
 * `PgShardOwners`).
 *
 * A reshard that fails (its waves' attempts spent) is rolled back when no wave was done yet
 * (the old count serves, as before); otherwise it stops partway: the done waves' guilds are
 * served by the new count, the others by the old (each guild by exactly one shard), and
 * `reshard(M)` continues it.
 */
import type { IdentifyThrottle, Reshard, SessionStore, Transport } from "@vigil/gateway"
import { GatewayInfo, IdentifyThrottle as IdentifyThrottleTag } from "@vigil/gateway"
import {
  Cause,
  Clock,
  Duration,
  Effect,
  Exit,
  Layer,
  Metric,
  Option,
  Schedule,
  type Schema,
  Scope,
  Stream,
  SubscriptionRef,
} from "effect"
import { Sharding } from "effect/cluster"
import { FetchHttpClient } from "effect/http"
import { SqlClient, type SqlError } from "effect/sql"
import { ClusterReshardFailed, ClusterReshardRefused } from "./ClusterError.ts"
import * as ClusterMetrics from "./ClusterMetrics.ts"
import * as Coordinator from "./internal/Coordinator.ts"
import * as Generation from "./internal/Generation.ts"
import { migrate } from "./internal/migrate.ts"
import { nameOf } from "./internal/names.ts"
import * as Wave from "./internal/Wave.ts"
import * as ShardCommands from "./ShardCommands.ts"
import type { ShardOwners } from "./ShardOwners.ts"
import * as ShardSingleton from "./ShardSingleton.ts"

export type { State as ReshardState } from "./internal/Generation.ts"

export interface ReshardingOptions {
  /** How often each runner reads the cluster's count and reshard. Default 500 ms. */
  readonly pollInterval?: Duration.Input | undefined
  /** Waves under way at once (each k = M / N extra connections). Default 1. */
  readonly parallelWaves?: number | undefined
  /** Attempts of one wave before the reshard stops. Default 3. */
  readonly waveAttempts?: number | undefined
  /** The per-guild handover inside a wave (`ShardManager`'s `reshardOptions`). */
  readonly handover?: Reshard.ReshardOptions | undefined
  /** How long the app may take to finish the events a wave handed it. Default 30 s. */
  readonly drainTimeout?: Duration.Input | undefined
  /**
   * A serving shard closed with 4011 (sharding required) reshards the cluster: to what
   * `GET /gateway/bot` recommends (at `apiBaseUrl`, default Discord's), rounded up to a
   * multiple of the count, and at least twice the count. Default off.
   */
  readonly autoReshard?: boolean | { readonly apiBaseUrl?: string | undefined } | undefined
  /**
   * Every this long (8 hours, say), the coordinator's runner (one in the cluster) asks
   * `GET /gateway/bot`; when the recommendation is above the serving count and no reshard is
   * under way, it reshards as a 4011 would (a multiple, at least twice). Default: never.
   */
  readonly checkEvery?: Duration.Input | undefined
  /** Where `GET /gateway/bot` is asked (`autoReshard`, `checkEvery`). Default Discord's API. */
  readonly apiBaseUrl?: string | undefined
}

export interface ClusterReshardOptions<E, R> extends ShardSingleton.ShardSingletonOptions<E, R> {
  readonly resharding?: ReshardingOptions | undefined
}

type Needs<R> =
  | Transport.GatewayTransport
  | ShardOwners
  | IdentifyThrottle.IdentifyThrottle
  | Exclude<R, Scope.Scope>

/** The coordinator's singleton name. */
export const coordinatorName = "vigil-reshard-coordinator"

/**
 * The shards of the cluster's count, as singletons whose set follows the count (see the
 * module doc), the reshard coordinator, and `ShardCommands`. The count starts as that of
 * `options.shards` when the cluster has none yet (a runner runs every shard of it, wherever
 * the cluster places them; the list itself is not used).
 */
export const layer = <E, R>(
  options: ClusterReshardOptions<E, R>,
): Layer.Layer<never, SqlError.SqlError, Sharding.Sharding | SqlClient.SqlClient | Needs<R>> =>
  Layer.unwrap(
    Effect.sync(() => {
      const local: ShardCommands.LocalShards = new Map()
      return Layer.merge(
        ShardCommands.layer(local),
        // A row that is not a count (written by something else) is a defect, not a start-up error.
        Layer.effectDiscard(register(options, local).pipe(Effect.catchTag("SchemaError", Effect.die))),
      )
    }),
  )

const register = <E, R>(options: ClusterReshardOptions<E, R>, local: ShardCommands.LocalShards) =>
  Effect.gen(function* () {
    const sharding = yield* Sharding.Sharding
    const sql = yield* SqlClient.SqlClient
    const resharding = options.resharding ?? {}
    const pollInterval = Duration.fromInputUnsafe(resharding.pollInterval ?? Duration.millis(500))
    const initial = options.shards[0]?.[1] ?? 1
    yield* migrate(Generation.migrations)
    const inSql = <A, E2>(effect: Effect.Effect<A, E2, SqlClient.SqlClient>) =>
      Effect.provideService(effect, SqlClient.SqlClient, sql)
    const report = ClusterMetrics.report
    const first = yield* inSql(Generation.read(initial))
    yield* report(first)
    const state = yield* SubscriptionRef.make(first)
    const refresh = inSql(Generation.readIfAny).pipe(
      Effect.flatMap((next) =>
        next === undefined ? Effect.void : Effect.andThen(SubscriptionRef.set(state, next), report(next)),
      ),
      Effect.catch((error) => Effect.logWarning(`cannot read the cluster's shard count: ${error.message}`)),
    )

    // A 4011 of a serving shard: Discord asks for more shards (once per reshard: the others are refused as in progress).
    const throttle = yield* IdentifyThrottleTag.IdentifyThrottle
    const apiBaseUrl =
      (typeof resharding.autoReshard === "object" ? resharding.autoReshard.apiBaseUrl : undefined) ??
      resharding.apiBaseUrl
    const recommended = GatewayInfo.fetchGatewayBot({ token: options.config.token, apiBaseUrl }).pipe(
      Effect.map((bot) => bot.shards),
      Effect.provide(FetchHttpClient.layer),
    )
    const onShardingRequired = Effect.gen(function* () {
      const now = yield* SubscriptionRef.get(state)
      if (now.phase === "running") return
      const from = now.count
      const to = Coordinator.targetFor(
        from,
        yield* recommended.pipe(
          Effect.catchCause((cause) =>
            Effect.as(Effect.logWarning("GET /gateway/bot failed: resharding to twice the count", cause), 0),
          ),
        ),
      )
      yield* Effect.logWarning(
        `a shard closed with 4011 (sharding required): resharding the cluster ${from} → ${to}`,
      )
      yield* reshard(to).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.provideService(IdentifyThrottleTag.IdentifyThrottle, throttle),
        Effect.catchCause((cause) => Effect.logWarning("the 4011-triggered reshard did not complete", cause)),
      )
    })
    const layerScope = yield* Effect.scope
    const serving: ShardSingleton.ShardSingletonOptions<E, R> =
      resharding.autoReshard === undefined || resharding.autoReshard === false
        ? options
        : {
            ...options,
            onStoppedForGood: (error) =>
              Effect.andThen(
                error._tag === "ShardingRequired"
                  ? Effect.forkIn(onShardingRequired, layerScope)
                  : Effect.void,
                options.onStoppedForGood?.(error) ?? Effect.void,
              ),
          }

    /** Until the shard's role under the state is no longer `role`. */
    const whileRole = (key: SessionStore.ShardKey, role: Generation.Role) =>
      SubscriptionRef.changes(state).pipe(
        Stream.filter((s) => Generation.roleOf(s, key) !== role),
        Stream.runHead,
        Effect.asVoid,
      )

    /** Until no runner holds the old shards `ids` (each left, or its lease ran out); fails after the wave timeout. */
    const standAside = (from: number, ids: ReadonlyArray<number>) =>
      Effect.gen(function* () {
        while ((yield* inSql(Generation.held(from, ids))) > 0) yield* Effect.sleep(pollInterval)
      }).pipe(
        Effect.mapError((error) => `cannot read the old shards' owners: ${error.message}`),
        Effect.timeoutOrElse({
          duration: resharding.handover?.waveTimeout ?? Duration.minutes(2),
          orElse: () => Effect.fail(`the old shards of ${from} did not stand aside for the whole-set wave`),
        }),
      )

    const wave = (key: SessionStore.ShardKey, to: number) =>
      Effect.gen(function* () {
        const [id, from] = key
        const row = { from, to, shard: id }
        const whole = Generation.wholeSet(from, to)
        const retire = whole ? Array.from({ length: from }, (_, s) => s) : [id]
        const joins = whole
          ? Array.from({ length: to }, (_, x) => x)
          : Array.from({ length: to / from }, (_, j) => id + j * from)
        const name = whole ? `reshard wave (whole set) ${from} → ${to}` : `reshard wave ${id}/${from} → ${to}`
        if ((yield* SubscriptionRef.get(state)).waves.get(id)?.state === "handed") {
          // Its runner died once the wave was marked: the new sessions (saved from their READY) carry on.
          const stored = yield* inSql(Generation.sessionsStored(to, joins))
          if (stored < joins.length)
            yield* Effect.logError(
              `${name}: handed over but only ${stored} of ${joins.length} new sessions were saved`,
            )
          yield* inSql(Generation.setWave(row, ["handed"], "done"))
          yield* Effect.logWarning(`${name}: committed after its runner stopped`)
          return
        }
        if (!(yield* inSql(Generation.setWave(row, ["go", "running"], "running")))) return
        yield* Effect.logInfo(`${name}: starting`)
        const others = retire.filter((s) => s !== id)
        const result = yield* Effect.andThen(
          // The other old shards' singletons stand aside: each leaves gracefully (its session
          // saved as the app finished it) before the wave takes it, so nothing comes twice.
          standAside(from, others),
          Wave.run(
            retire,
            joins,
            from,
            to,
            options,
            { reshard: resharding.handover, drainTimeout: resharding.drainTimeout },
            local,
            inSql(Generation.setWave(row, ["running"], "handed")),
            inSql(Generation.setWave(row, ["running", "handed"], "done")),
          ),
        ).pipe(Effect.exit)
        if (Exit.isSuccess(result)) {
          yield* Effect.logInfo(`${name}: done in ${result.value.tookMillis} ms`)
          return
        }
        const reason = Option.getOrElse(Exit.findErrorOption(result), () => Cause.pretty(result.cause))
        yield* Effect.logWarning(`${name} failed: ${reason}`)
        // (A handed wave is not failed: its old session is done with, its new ones carry its guilds.)
        yield* inSql(Generation.setWave(row, ["running"], "failed", reason))
      })

    /** One shard's singleton: follows its role (a singleton's effect must never end). */
    const shardLoop = (key: SessionStore.ShardKey): Effect.Effect<never, never, Needs<R>> =>
      Effect.forever(
        Effect.gen(function* () {
          // Fresh from the database: a singleton that moved mid-change must not serve a shard
          // whose whole-set wave has begun (it would take it from the wave).
          yield* refresh
          const now = yield* SubscriptionRef.get(state)
          const role = Generation.roleOf(now, key)
          if (role === "serve") {
            // Left gracefully when the role changes: the session saved up to what the app handled.
            yield* Effect.raceFirst(ShardSingleton.runShard(key, serving, local), whileRole(key, role))
          } else if (role === "wave") {
            yield* wave(key, now.to!)
            yield* refresh
          } else {
            yield* whileRole(key, role)
          }
        }).pipe(
          Effect.catchCause((cause) =>
            Effect.logError("a reshard step failed", cause).pipe(Effect.andThen(Effect.sleep(pollInterval))),
          ),
        ),
      ).pipe(Effect.annotateLogs({ package: "@vigil/cluster", shard: nameOf(key) }))

    // Per count, the scope its singletons are registered in.
    const registered = new Map<number, Scope.Closeable>()
    const follow = Effect.gen(function* () {
      const now = yield* SubscriptionRef.get(state)
      const wanted = new Set([now.count, ...(now.to === undefined ? [] : [now.to])])
      for (const count of wanted) {
        if (registered.has(count)) continue
        const scope = yield* Scope.fork(layerScope)
        registered.set(count, scope)
        for (let id = 0; id < count; id++) {
          yield* sharding
            .registerSingleton(nameOf([id, count]), shardLoop([id, count]))
            .pipe(Scope.provide(scope))
        }
      }
      for (const [count, scope] of registered) {
        if (wanted.has(count)) continue
        registered.delete(count)
        yield* Scope.close(scope, Exit.void)
      }
    })
    yield* follow
    yield* Effect.forkScoped(
      Effect.repeat(
        Effect.andThen(refresh, follow).pipe(
          Effect.catchCause((cause) => Effect.logError("following the cluster's shard count failed", cause)),
        ),
        Schedule.spaced(pollInterval),
      ).pipe(Effect.asVoid),
    )
    yield* sharding.registerSingleton(
      coordinatorName,
      coordinate(resharding, pollInterval, recommended).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.provideService(IdentifyThrottleTag.IdentifyThrottle, throttle),
      ),
    )
  })

/**
 * The coordinator singleton: drives a running reshard's waves, and with `checkEvery` checks
 * the recommended count. Never ends (a singleton that ends is never restarted).
 */
const coordinate = (
  resharding: ReshardingOptions,
  pollInterval: Duration.Duration,
  recommended: Effect.Effect<number, unknown>,
) => {
  const options = {
    parallelWaves: Math.max(1, resharding.parallelWaves ?? 1),
    waveAttempts: Math.max(1, resharding.waveAttempts ?? 3),
  }
  const steps = Effect.forever(
    Effect.andThen(
      Effect.sleep(pollInterval),
      Coordinator.step(options).pipe(
        Effect.catchCause((cause) => Effect.logWarning("reshard coordinator step failed", cause)),
      ),
    ),
  )
  const checks =
    resharding.checkEvery === undefined
      ? Effect.never
      : Coordinator.watch({
          interval: resharding.checkEvery,
          state: Generation.readIfAny,
          recommended,
          reshard: (to) => reshard(to),
        })
  return Effect.all([steps, checks], { concurrency: 2, discard: true }).pipe(
    Effect.andThen(Effect.never),
    Effect.annotateLogs({ package: "@vigil/cluster", singleton: coordinatorName }),
  )
}

export interface ReshardOutcome {
  readonly from: number
  readonly to: number
  /** From the reshard's start to the new count serving, as the database measured it. */
  readonly tookMillis: number
}

/**
 * Reshards the cluster to `to` (from any runner, or any process on the database): in waves
 * when `to` is a multiple of the serving count, else as one whole-set wave (see the module
 * doc). Refused (typed) when one runs, `to` is the serving count, or the cluster's daily
 * identify budget lacks the new shards plus `safetyMargin` (default: the serving count). Waits
 * for the end: the outcome, or `ClusterReshardFailed`.
 */
export const reshard = (
  to: number,
  options: {
    readonly safetyMargin?: number | undefined
    readonly pollInterval?: Duration.Input | undefined
  } = {},
): Effect.Effect<
  ReshardOutcome,
  ClusterReshardRefused | ClusterReshardFailed | SqlError.SqlError | Schema.SchemaError,
  SqlClient.SqlClient | IdentifyThrottle.IdentifyThrottle
> =>
  Effect.gen(function* () {
    yield* migrate(Generation.migrations)
    const before = yield* Generation.readIfAny
    if (before === undefined) {
      yield* Metric.update(ClusterMetrics.reshards("refused"), 1)
      return yield* new ClusterReshardRefused({
        reason: "no-cluster",
        detail: "no runner has started the cluster yet",
      })
    }
    const from = before.count
    const throttle = yield* IdentifyThrottleTag.IdentifyThrottle
    const remaining = yield* throttle.remaining
    // Every new shard identifies once (in waves or the whole set).
    const needed = to
    const margin = options.safetyMargin ?? from
    if (before.phase !== "running" && remaining < needed + margin) {
      yield* Metric.update(ClusterMetrics.reshards("refused"), 1)
      return yield* new ClusterReshardRefused({
        reason: "budget",
        detail: `${remaining} identifies left today; ${needed} new shards need ${needed + margin} (safety margin ${margin})`,
      })
    }
    const begun = yield* Generation.begin(to)
    if (begun._tag !== "started") {
      yield* Metric.update(ClusterMetrics.reshards("refused"), 1)
      return yield* new ClusterReshardRefused({ reason: begun._tag, detail: begun.detail })
    }
    yield* Effect.logInfo(`resharding the cluster ${from} → ${to}`)
    const poll = Duration.fromInputUnsafe(options.pollInterval ?? Duration.millis(200))
    const clock = yield* Clock.Clock
    const started = clock.currentTimeMillisUnsafe()
    while (true) {
      yield* Effect.sleep(poll)
      const now = (yield* Generation.readIfAny)!
      if (now.phase === "running") continue
      if (now.phase === "idle" && now.count === to) {
        return { from, to, tookMillis: now.tookMillis ?? clock.currentTimeMillisUnsafe() - started }
      }
      return yield* new ClusterReshardFailed({
        from,
        to,
        reason: now.reason ?? "stopped",
        rolledBack: now.phase !== "partial",
      })
    }
  })

/** The cluster's count and the reshard under way (or the last one's end). */
export const status: Effect.Effect<
  Generation.State | undefined,
  SqlError.SqlError | Schema.SchemaError,
  SqlClient.SqlClient
> = Effect.andThen(migrate(Generation.migrations), Generation.readIfAny)
