/**
 * Runs many shards in one process under Discord's identify limits: reads `GET /gateway/bot`
 * (or takes it from config), starts the chosen shards in id order through one shared
 * `IdentifyThrottle`, merges their events (tagged with the shard id), routes sends by guild,
 * and starts, stops or restarts one shard without touching the others.
 */
import type { GatewayPresenceUpdateData, GatewayVoiceStateUpdateData } from "discord-api-types/v10"
import {
  type Cause,
  Context,
  Deferred,
  Effect,
  Exit,
  Queue,
  Schema,
  Scope,
  Semaphore,
  Stream,
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
import * as Delivery from "./internal/Delivery.ts"
import type * as Members from "./Members.ts"
import type * as Protocol from "./Protocol.ts"
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
}

export interface ShardEvent {
  readonly shardId: number
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
  /** Fails with the first fatal error any shard stops with. */
  readonly await: Effect.Effect<never, ManagerStop>
}

/** `(guild_id >> 22) % shard_count`, on the snowflake as a BigInt (ids exceed 2^53). */
export const shardForGuild = (guildId: string, shardCount: number): number =>
  Number((BigInt(guildId) >> 22n) % BigInt(shardCount))

interface Running {
  readonly shard: Shard.Shard
  readonly scope: Scope.Closeable
}

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
  const shardCount = config.shardCount ?? gatewayBot.shards
  const shardIds = selectShards(config.shards, shardCount)
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
  const managerScope = yield* Effect.scope

  // Every shard delivers straight into this one buffer (no pump per shard); when it is full a
  // shard's reader waits, which back-pressures that shard alone.
  const merged = yield* Queue.make<ShardEvent, Cause.Done>({
    capacity: config.events?.capacity ?? 1024,
    strategy: Delivery.queueStrategy(config.events?.strategy ?? "backpressure"),
  })
  const stopped = yield* Deferred.make<never, ManagerStop>()
  const running = new Map<number, Running>()
  // One start/stop/restart of a shard id at a time: `Shard.make` suspends (the store may
  // answer asynchronously), and a second start in that gap would run a second Shard.
  const locks = new Map<number, Semaphore.Semaphore>()
  const serialized =
    (f: (id: number) => Effect.Effect<void>) =>
    (id: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (id < 0 || id >= shardCount) return Effect.void
        let lock = locks.get(id)
        if (!lock) {
          lock = Semaphore.makeUnsafe(1)
          locks.set(id, lock)
        }
        return lock.withPermit(f(id))
      })

  const startUnlocked = (id: number): Effect.Effect<void> =>
    Effect.gen(function* () {
      if (running.has(id)) return
      const scope = yield* Scope.fork(managerScope)
      const shard = yield* Shard.make(
        { ...config, shard: [id, shardCount], gatewayUrl: gatewayBot.url },
        { queue: merged, wrap: (dispatch): ShardEvent => ({ shardId: id, dispatch }) },
      ).pipe(Scope.provide(scope), Effect.provideContext(context))
      running.set(id, { shard, scope })
      // A fatal stop of any shard is the manager's to report.
      yield* Effect.forkIn(
        Effect.catch(shard.await, (error) => Deferred.fail(stopped, error)),
        scope,
      )
    })

  const stopUnlocked = (id: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      const entry = running.get(id)
      if (!entry) return Effect.void
      running.delete(id)
      return Scope.close(entry.scope, Exit.void)
    })

  const start = serialized(startUnlocked)
  const stop = serialized(stopUnlocked)

  // In id order, so each identify bucket is served lowest shard first.
  for (const id of shardIds) yield* start(id)
  yield* Effect.addFinalizer(() => Queue.end(merged))

  const all = Effect.sync(() => [...running.values()].map((r) => r.shard))
  const shardFor = (guildId: string) => shardForGuild(guildId, shardCount)
  /** Runs `f` on the shard with this id, or fails with `ShardNotRunning`. */
  const onShard = <A, E>(shardId: number, f: (shard: Shard.Shard) => Effect.Effect<A, E>) =>
    Effect.suspend((): Effect.Effect<A, E | ShardNotRunning> => {
      const target = running.get(shardId)
      return target ? f(target.shard) : Effect.fail(new ShardNotRunning({ shardId }))
    })
  /** The guild's shard; DM-related commands (no guild) go to shard 0. */
  const onGuild = <A, E>(guildId: string | undefined, f: (shard: Shard.Shard) => Effect.Effect<A, E>) =>
    onShard(guildId === undefined ? 0 : shardFor(guildId), f)

  return {
    shardCount,
    shardIds,
    gatewayBot,
    identifyThrottle,
    events: Stream.fromQueue(merged),
    shard: (id) => running.get(id)?.shard,
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
    restart: serialized((id) => Effect.andThen(stopUnlocked(id), startUnlocked(id))),
    await: Deferred.await(stopped),
  } satisfies ShardManager
})

const selectShards = (selection: ShardManagerConfig["shards"], count: number): ReadonlyArray<number> => {
  const all = Array.from({ length: count }, (_, i) => i)
  if (selection === undefined) return all
  if ("from" in selection) return all.filter((id) => id >= selection.from && id <= selection.to)
  return [...new Set(selection)].filter((id) => id >= 0 && id < count).sort((a, b) => a - b)
}
