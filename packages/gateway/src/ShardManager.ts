/**
 * Runs many shards in one process under Discord's identify limits: reads `GET /gateway/bot`
 * (or takes it from config), starts the chosen shards in id order through one shared
 * `IdentifyThrottle`, merges their events (tagged with the shard id), routes sends by guild,
 * and starts, stops or restarts one shard without touching the others.
 *
 * `reshard(count)` changes the shard count with no downtime: a new generation of shards runs
 * beside the old one (in waves when the new count is a multiple of the old, see `Reshard.ts`),
 * identifying through the same throttle; each guild is handed over once its new shard streams
 * it, its events delivered once and in order across both sessions (`internal/Handover.ts`,
 * applied in `events` as the consumer reads); then the old shard logs out (1000), reading on
 * to the server's close frame so nothing it had unread is lost (`Shard.retire`). A failure
 * rolls back to the old count. Triggers: the call, a 4011 (`autoReshard`), or a periodic
 * check of `/gateway/bot` (`reshardCheckInterval`).
 *
 * Here: the shards, their generations and the commands. The merged buffer and its filter are
 * `internal/Merged.ts`; carrying a reshard out, `internal/Resharding.ts`.
 */
import type { GatewayPresenceUpdateData, GatewayVoiceStateUpdateData } from "discord-api-types/v10"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Option,
  Schema,
  Scope,
  Semaphore,
  type Stream,
  SubscriptionRef,
} from "effect"
import type { HttpClient } from "effect/http"
import type {
  AuthenticationFailed,
  FatalGatewayError,
  PayloadTooLarge,
  SessionStartLimitExhausted,
  ShardStopped,
} from "./GatewayError.ts"
import * as GatewayInfo from "./GatewayInfo.ts"
import * as IdentifyThrottleModule from "./IdentifyThrottle.ts"
import { IdentifyThrottle, type IdentifyThrottleService } from "./IdentifyThrottle.ts"
import * as Merged from "./internal/Merged.ts"
import * as Resharding from "./internal/Resharding.ts"
import type * as Members from "./Members.ts"
import type * as Protocol from "./Protocol.ts"
import * as Reshard from "./Reshard.ts"
import type { SessionStore } from "./SessionStore.ts"
import * as Shard from "./Shard.ts"
import type * as Soundboard from "./Soundboard.ts"
import type { GatewayTransport } from "./Transport.ts"

export interface ShardManagerConfig extends Omit<Shard.ShardConfig, "shard" | "gatewayUrl"> {
  /** Total shard count; default: Discord's recommendation from `/gateway/bot`. */
  readonly shardCount?: number | undefined
  /** Which shards this process runs: all (default), a list, or a range [from, to]. */
  readonly shards?: ReadonlyArray<number> | { readonly from: number; readonly to: number } | undefined
  readonly apiBaseUrl?: string | undefined
  /** Skip the HTTP call and use these values (tests, or a cached answer). */
  readonly gatewayBot?: GatewayInfo.GatewayBot | undefined
  /** When the daily identify budget is spent: fail with a typed error (default) or wait. */
  readonly onSessionLimitExhausted?: "fail" | "wait" | undefined
  /**
   * The identify limits to honour. By default the manager builds them from `/gateway/bot`;
   * pass the previous manager's `identifyThrottle` when replacing one manager with another
   * for the same bot, so the 5 s buckets and the daily budget carry over.
   */
  readonly identifyThrottle?: IdentifyThrottleService | undefined
  /** On a 4011 close: ask `/gateway/bot` for the recommended count and reshard to it. Default false. */
  readonly autoReshard?: boolean | undefined
  /** Ask `/gateway/bot` this often (e.g. 8 hours); reshard when the recommendation rises. Default: never. */
  readonly reshardCheckInterval?: Duration.Input | undefined
  readonly reshardOptions?: Reshard.ReshardOptions | undefined
}

export interface ShardEvent {
  readonly shardId: number
  /** The count the shard runs with: while a reshard runs, two counts deliver. */
  readonly shardCount: number
  readonly dispatch: Protocol.Dispatch
}

export type ManagerStop = FatalGatewayError | SessionStartLimitExhausted

/** A command for a guild whose shard does not run in this process (or is stopped). */
export class ShardNotRunning extends Schema.TaggedError<ShardNotRunning>()("ShardNotRunning", {
  shardId: Schema.Int,
}) {
  override get message() {
    return `shard ${this.shardId} is not running in this process`
  }
}

export interface ShardManager {
  /** The count serving guilds (the old one until a reshard completes). */
  readonly shardCount: number
  readonly shardIds: ReadonlyArray<number>
  readonly gatewayBot: GatewayInfo.GatewayBot
  /** The identify limits this manager's shards share. */
  readonly identifyThrottle: IdentifyThrottleService
  /** Every shard's dispatches, merged, tagged with the shard id. One consumer. */
  readonly events: Stream.Stream<ShardEvent>
  /** The running shard with this id, if any. */
  readonly shard: (id: number) => Shard.Shard | undefined
  readonly statuses: Effect.Effect<ReadonlyArray<Shard.ShardStatus>>
  readonly health: Effect.Effect<ReadonlyArray<Shard.ShardHealth>>
  /** The shard a guild's events and commands belong to: `(guild_id >> 22) % shard_count`. */
  readonly shardFor: (guildId: string) => number
  /** Sends a guild's command on its shard (DM-related commands go to shard 0). */
  readonly send: (
    guildId: string | undefined,
    op: number,
    d: unknown,
  ) => Effect.Effect<void, PayloadTooLarge | ShardNotRunning | ShardStopped>
  /** Presence Update (op 3) on one shard, or on every running shard when `shardId` is absent. */
  readonly updatePresence: (
    presence: GatewayPresenceUpdateData,
    options?: { readonly shardId?: number | undefined },
  ) => Effect.Effect<void, PayloadTooLarge | ShardNotRunning | ShardStopped>
  /** Voice State Update (op 4), on the shard of `state.guild_id`. */
  readonly updateVoiceState: (
    state: GatewayVoiceStateUpdateData,
  ) => Effect.Effect<void, PayloadTooLarge | ShardNotRunning | ShardStopped>
  /** Request Guild Members (op 8), on the guild's shard: see `Shard.requestGuildMembers`. */
  readonly requestGuildMembers: (
    request: Members.RequestGuildMembers,
  ) => Effect.Effect<
    Members.GuildMembersResult,
    Members.GuildMembersError | PayloadTooLarge | ShardNotRunning | ShardStopped
  >
  /**
   * Request Soundboard Sounds (op 31): the guilds are split by shard, one request per shard
   * at once, and their answers gathered: see `Shard.requestSoundboardSounds`.
   */
  readonly requestSoundboardSounds: (
    request: Soundboard.RequestSoundboardSounds,
  ) => Effect.Effect<
    Soundboard.SoundboardSoundsResult,
    Soundboard.SoundboardSoundsTimeout | PayloadTooLarge | ShardNotRunning | ShardStopped
  >
  readonly start: (id: number) => Effect.Effect<void>
  /** Stops one shard, keeping its session resumable. */
  readonly stop: (id: number) => Effect.Effect<void>
  /** Stops and starts one shard; it resumes its session. */
  readonly restart: (id: number) => Effect.Effect<void>
  /**
   * Changes the shard count with no downtime (see the module doc): returns once the old shards
   * are closed. Refused (typed) when a reshard runs, the count is the current one, or the
   * daily identify budget lacks the new shards plus the safety margin; a failure midway is
   * rolled back and fails with `ReshardFailed`.
   */
  readonly reshard: (count: number) => Effect.Effect<void, Reshard.ReshardError>
  /** What a reshard is doing, and how the last one ended. */
  readonly reshardStatus: Effect.Effect<Reshard.ReshardStatus>
  /** Fails with the first fatal error any shard stops with. */
  readonly await: Effect.Effect<never, ManagerStop>
}

/** `(guild_id >> 22) % shard_count`, on the snowflake as a BigInt (ids exceed 2^53). */
export const shardForGuild = (guildId: string, shardCount: number): number =>
  Number((BigInt(guildId) >> 22n) % BigInt(shardCount))

export const make = Effect.fnUntraced(function* (
  config: ShardManagerConfig,
): Effect.fn.Return<
  ShardManager,
  GatewayInfo.GatewayInfoError | AuthenticationFailed,
  Scope.Scope | GatewayTransport | SessionStore | HttpClient.HttpClient
> {
  const gatewayBot =
    config.gatewayBot ??
    (yield* GatewayInfo.fetchGatewayBot({ token: config.token, apiBaseUrl: config.apiBaseUrl }))
  const initialCount = config.shardCount ?? gatewayBot.shards
  const limit = gatewayBot.session_start_limit

  const identifyThrottle =
    config.identifyThrottle ??
    (yield* IdentifyThrottleModule.make({
      maxConcurrency: limit.max_concurrency,
      sessionStartLimit: {
        total: limit.total,
        remaining: limit.remaining,
        resetAfterMillis: limit.reset_after,
      },
      onExhausted: config.onSessionLimitExhausted,
    }))
  const context = Context.add(
    yield* Effect.context<GatewayTransport | SessionStore>(),
    IdentifyThrottle,
    identifyThrottle,
  )
  const http = yield* Effect.context<HttpClient.HttpClient>()
  const managerScope = yield* Effect.scope
  const clock = yield* Clock.Clock

  // Every shard delivers straight into this one buffer (no pump per shard); when it is full a
  // shard's reader waits, which back-pressures that shard alone.
  const merged = yield* Merged.make({
    capacity: config.events?.capacity ?? 1024,
    strategy: config.events?.strategy ?? "backpressure",
  })
  const stopped = yield* Deferred.make<never, ManagerStop>()
  /** The serving shards; during a reshard, `next` holds the new count's. */
  // Its fatal stops go to `onServingFatal` (below, once the reshard it may start exists).
  let current: Resharding.Generation = Resharding.generation(initialCount, (id, error) =>
    onServingFatal(id, error),
  )
  let next: Resharding.Generation | undefined
  let shardIds = selectShards(config.shards, initialCount)
  // One start/stop/restart of a shard id at a time: `Shard.make` suspends (the store may
  // answer asynchronously), and a second start in that gap would run a second Shard.
  const locks = new Map<number, Semaphore.Semaphore>()
  const serialized =
    (f: (id: number) => Effect.Effect<void>) =>
    (id: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (id < 0 || id >= current.count) return Effect.void
        let lock = locks.get(id)
        if (!lock) {
          lock = Semaphore.makeUnsafe(1)
          locks.set(id, lock)
        }
        return lock.withPermit(f(id))
      })

  /** Logs a shard out (close 1000, session ended), bounded: a wedged socket does not hold a reshard. */
  const logoutWithin = (shard: Shard.Shard, retire = false) =>
    Effect.timeoutOrElse(retire ? shard.retire : shard.logout, {
      duration: "10 seconds",
      orElse: () => Effect.void,
    })

  const startIn = (gen: Resharding.Generation, id: number): Effect.Effect<void> =>
    Effect.gen(function* () {
      if (gen.shards.has(id)) return
      gen.stopped.delete(id)
      const scope = yield* Scope.fork(managerScope)
      const count = gen.count
      const shard = yield* Shard.make(
        { ...config, shard: [id, count], gatewayUrl: gatewayBot.url },
        {
          queue: merged.queue,
          wrap: (dispatch) => merged.stamp({ shardId: id, shardCount: count, dispatch }),
        },
      ).pipe(Scope.provide(scope), Effect.provideContext(context))
      gen.shards.set(id, { shard, scope })
      // Runs before the shard's own finalizers (the last added runs first).
      yield* Scope.addFinalizer(
        scope,
        Effect.suspend(() => (gen.provisional ? Effect.ignore(logoutWithin(shard)) : Effect.void)),
      )
      // A fatal stop is the generation's to report (the manager's, or a reshard's).
      yield* Effect.forkIn(
        Effect.catch(shard.await, (error) =>
          Effect.suspend(() => {
            gen.stopped.add(id)
            const joining = gen.joining.get(id)
            return joining ? joining(error) : gen.onFatal(id, error)
          }),
        ),
        scope,
      )
    })

  /** Closes a shard: see `Resharding.Ending`. */
  const closeIn = (gen: Resharding.Generation, id: number, ending: Resharding.Ending): Effect.Effect<void> =>
    Effect.suspend(() => {
      const entry = gen.shards.get(id)
      if (!entry) return Effect.void
      gen.shards.delete(id)
      const ended = ending === "resumable" ? Effect.void : logoutWithin(entry.shard, ending === "retire")
      return Effect.andThen(ended, Scope.close(entry.scope, Exit.void))
    }).pipe(Effect.uninterruptible)

  const start = serialized((id) => startIn(current, id))
  const stop = serialized((id) => closeIn(current, id, "resumable"))

  // In id order, so each identify bucket is served lowest shard first.
  for (const id of shardIds) yield* start(id)
  yield* Effect.addFinalizer(() => merged.end)

  // Reshard ----------------------------------------------------------------

  const resharding: Resharding.Resharding = Resharding.make({
    fleet: {
      current: () => current,
      next: () => next,
      setNext: (gen) => {
        next = gen
      },
      commit: (gen) => {
        // In id order, as a manager started with this count lists them (`statuses`, `health`).
        const started = [...gen.shards].sort(([a], [b]) => a - b)
        gen.shards.clear()
        for (const [id, entry] of started) gen.shards.set(id, entry)
        current = gen
        next = undefined
        shardIds = started.map(([id]) => id)
      },
    },
    startIn,
    closeIn,
    onServingFatal: (id, error) => onServingFatal(id, error),
    merged,
    identifyThrottle,
    clock,
    options: config.reshardOptions ?? {},
  })

  /** A serving shard stopped for good: a 4011 reshards when enabled, anything else stops the manager. */
  const onServingFatal = (id: number, error: ManagerStop): Effect.Effect<void> =>
    error._tag === "ShardingRequired" && config.autoReshard
      ? Effect.forkIn(
          Effect.gen(function* () {
            const bot = yield* GatewayInfo.fetchGatewayBot({
              token: config.token,
              apiBaseUrl: config.apiBaseUrl,
            })
            // Discord asks for more shards: its recommendation, or twice as many if it has not risen yet.
            const count = bot.shards > current.count ? bot.shards : current.count * 2
            yield* Effect.logWarning(`shard ${id} closed with 4011: resharding to ${count}`)
            yield* resharding.reshard(count, "4011")
          }).pipe(
            Effect.provideContext(http),
            Effect.catchCause((cause) =>
              Effect.gen(function* () {
                const refused = Option.getOrUndefined(Cause.findErrorOption(cause))
                // Another 4011 of the same moment: the reshard under way serves it too.
                if (
                  refused?._tag === "ReshardRefused" &&
                  refused.reason === "in-progress" &&
                  resharding.busy()
                )
                  return
                yield* Effect.logWarning("4011-triggered reshard did not complete", cause)
                // The shard is gone and nothing replaces it: the manager stops, as without autoReshard.
                yield* Deferred.fail(stopped, error)
              }),
            ),
          ),
          managerScope,
        ).pipe(Effect.asVoid)
      : Deferred.fail(stopped, error).pipe(Effect.asVoid)

  if (config.reshardCheckInterval !== undefined) {
    yield* Effect.forkIn(
      Reshard.watchRecommendation({
        interval: config.reshardCheckInterval,
        recommended: GatewayInfo.fetchGatewayBot({ token: config.token, apiBaseUrl: config.apiBaseUrl }).pipe(
          Effect.map((bot) => bot.shards),
          Effect.provideContext(http),
        ),
        current: () => current.count,
        reshard: (count) => resharding.reshard(count, "periodic"),
      }),
      managerScope,
    )
  }

  // Commands ---------------------------------------------------------------

  const all = Effect.sync(() => [
    ...[...current.shards.values()].map((r) => r.shard),
    ...(next ? [...next.shards.values()].map((r) => r.shard) : []),
  ])
  const shardFor = (guildId: string) => shardForGuild(guildId, current.count)
  /** The running shard with this id: the serving count's, else the new count's. */
  const runningShard = (shardId: number) =>
    current.shards.get(shardId)?.shard ?? next?.shards.get(shardId)?.shard
  /** Runs `f` on the shard with this id, or fails with `ShardNotRunning`. */
  const onShard = <A, E>(shardId: number, f: (shard: Shard.Shard) => Effect.Effect<A, E>) =>
    Effect.suspend((): Effect.Effect<A, E | ShardNotRunning> => {
      const target = current.shards.get(shardId)?.shard
      return target ? f(target) : Effect.fail(new ShardNotRunning({ shardId }))
    })
  /**
   * The shard holding the guild: its serving-count shard, or (once that closed in a reshard
   * wave) its new-count one. DM-related commands (no guild) go to shard 0.
   */
  const onGuild = <A, E>(guildId: string | undefined, f: (shard: Shard.Shard) => Effect.Effect<A, E>) =>
    Effect.suspend((): Effect.Effect<A, E | ShardNotRunning> => {
      const old = guildId === undefined ? 0 : shardFor(guildId)
      const target =
        current.shards.get(old)?.shard ??
        (next === undefined
          ? undefined
          : next.shards.get(guildId === undefined ? 0 : shardForGuild(guildId, next.count))?.shard)
      return target ? f(target) : Effect.fail(new ShardNotRunning({ shardId: old }))
    })

  return {
    get shardCount() {
      return current.count
    },
    get shardIds() {
      return shardIds
    },
    gatewayBot,
    identifyThrottle,
    events: merged.events,
    shard: (id) => runningShard(id),
    statuses: Effect.flatMap(all, (shards) => Effect.forEach(shards, (s) => SubscriptionRef.get(s.status))),
    health: Effect.flatMap(all, (shards) => Effect.forEach(shards, (s) => s.health)),
    shardFor,
    send: (guildId, op, d) => onGuild(guildId, (shard) => shard.send(op, d)),
    updatePresence: (presence, options) =>
      options?.shardId !== undefined
        ? onShard(options.shardId, (shard) => shard.updatePresence(presence))
        : Effect.flatMap(all, (shards) =>
            Effect.forEach(shards, (shard) => shard.updatePresence(presence), {
              concurrency: "unbounded",
              discard: true,
            }),
          ),
    updateVoiceState: (state) => onGuild(state.guild_id, (shard) => shard.updateVoiceState(state)),
    requestGuildMembers: (request) => onGuild(request.guildId, (shard) => shard.requestGuildMembers(request)),
    requestSoundboardSounds: (request) =>
      Effect.suspend(() => {
        const byShard = new Map<number, Array<string>>()
        for (const guildId of request.guildIds) {
          const id = shardFor(guildId)
          const list = byShard.get(id)
          if (list) list.push(guildId)
          else byShard.set(id, [guildId])
        }
        return Effect.forEach(
          byShard,
          ([id, guildIds]) => onShard(id, (shard) => shard.requestSoundboardSounds({ ...request, guildIds })),
          { concurrency: "unbounded" },
        ).pipe(Effect.map((answers) => answers.flat()))
      }),
    start,
    stop,
    restart: serialized((id) => Effect.andThen(closeIn(current, id, "resumable"), startIn(current, id))),
    reshard: (count) => resharding.reshard(count, "explicit"),
    reshardStatus: resharding.status,
    await: Deferred.await(stopped),
  } satisfies ShardManager
})

const selectShards = (selection: ShardManagerConfig["shards"], count: number): ReadonlyArray<number> => {
  const all = Array.from({ length: count }, (_, i) => i)
  if (selection === undefined) return all
  if ("from" in selection) return all.filter((id) => id >= selection.from && id <= selection.to)
  return [...new Set(selection)].filter((id) => id >= 0 && id < count).sort((a, b) => a - b)
}
