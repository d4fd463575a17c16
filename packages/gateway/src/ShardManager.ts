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
 * applied in `events` as the consumer reads); then the old shard logs out (1000). A failure
 * rolls back to the old count. Triggers: the call, a 4011 (`autoReshard`), or a periodic
 * check of `/gateway/bot` (`reshardCheckInterval`).
 */
import type { GatewayPresenceUpdateData, GatewayVoiceStateUpdateData } from "discord-api-types/v10"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Metric,
  Option,
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
import * as Handover from "./internal/Handover.ts"
import type * as Members from "./Members.ts"
import * as Metrics from "./Metrics.ts"
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
  readonly reshardOptions?: ReshardOptions | undefined
}

export interface ReshardOptions {
  /** Identifies to keep in the daily budget beyond the new shards. Default: the current count. */
  readonly safetyMargin?: number | undefined
  /**
   * A joined guild with nothing in between is handed over once this long passed since its new
   * shard's GUILD_CREATE and its old shard's last event for it (the old stream has caught
   * up). Default 1 s.
   */
  readonly quietMillis?: number | undefined
  /**
   * A guild a new shard announced in READY but sent no GUILD_CREATE for within this is taken
   * as unavailable (an outage) and not waited for. Default 30 s.
   */
  readonly unavailableAfter?: Duration.Input | undefined
  /** A wave whose guilds are not handed over within this fails the reshard (rolled back). Default 2 minutes. */
  readonly waveTimeout?: Duration.Input | undefined
  /** Fingerprints remembered per guild to match the two copies of an event. Default 256. */
  readonly window?: number | undefined
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

interface Running {
  readonly shard: Shard.Shard
  readonly scope: Scope.Closeable
}

/** The shards of one count. */
interface Generation {
  readonly count: number
  readonly shards: Map<number, Running>
  /** Shards that stopped for good (a fatal close): not worth a handover. */
  readonly stopped: Set<number>
  /** Where a fatal stop of one of them goes. */
  onFatal: (id: number, error: ManagerStop) => Effect.Effect<void>
  /** Shards joining in a reshard wave: their fatal stop fails the wave instead. */
  readonly joining: Map<number, (error: ManagerStop) => Effect.Effect<void>>
  /**
   * A reshard's new shards until it commits: however their scope closes (a rollback, the
   * manager shut down mid-reshard), they log out, so no session of a count nobody will run
   * again is left resumable.
   */
  provisional: boolean
}

/** Queued behind every event already in the merged buffer: runs when the consumer reaches it. */
class Marker {
  readonly run: () => ReadonlyArray<ShardEvent>
  readonly done: Deferred.Deferred<void>
  constructor(run: () => ReadonlyArray<ShardEvent>, done: Deferred.Deferred<void>) {
    this.run = run
    this.done = done
  }
}

type Item = ShardEvent | Marker

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
  const merged = yield* Queue.make<Item, Cause.Done>({
    capacity: config.events?.capacity ?? 1024,
    strategy: Delivery.queueStrategy(config.events?.strategy ?? "backpressure"),
  })
  const stopped = yield* Deferred.make<never, ManagerStop>()
  const failManager = (_id: number, error: ManagerStop) => Deferred.fail(stopped, error)
  const generation = (count: number): Generation => ({
    count,
    shards: new Map(),
    stopped: new Set(),
    onFatal: failManager,
    joining: new Map(),
    provisional: false,
  })
  /** The serving shards; during a reshard, `next` holds the new count's. */
  let current = generation(initialCount)
  let next: Generation | undefined
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
  const logoutWithin = (shard: Shard.Shard) =>
    Effect.timeoutOrElse(shard.logout, { duration: "10 seconds", orElse: () => Effect.void })

  const startIn = (gen: Generation, id: number): Effect.Effect<void> =>
    Effect.gen(function* () {
      if (gen.shards.has(id)) return
      gen.stopped.delete(id)
      const scope = yield* Scope.fork(managerScope)
      const count = gen.count
      const shard = yield* Shard.make(
        { ...config, shard: [id, count], gatewayUrl: gatewayBot.url },
        { queue: merged, wrap: (dispatch): ShardEvent => ({ shardId: id, shardCount: count, dispatch }) },
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

  /** Closes a shard: `logout` ends its session (1000), otherwise it stays resumable. */
  const closeIn = (gen: Generation, id: number, logout: boolean): Effect.Effect<void> =>
    Effect.suspend(() => {
      const entry = gen.shards.get(id)
      if (!entry) return Effect.void
      gen.shards.delete(id)
      const ended = logout ? logoutWithin(entry.shard) : Effect.void
      return Effect.andThen(ended, Scope.close(entry.scope, Exit.void))
    }).pipe(Effect.uninterruptible)

  const start = serialized((id) => startIn(current, id))
  const stop = serialized((id) => closeIn(current, id, false))

  // In id order, so each identify bucket is served lowest shard first.
  for (const id of shardIds) yield* start(id)
  yield* Effect.addFinalizer(() => Queue.end(merged))

  // Reshard ----------------------------------------------------------------

  const reshardOptions = config.reshardOptions ?? {}
  const quietMillis = reshardOptions.quietMillis ?? 1000
  const waveTimeoutMillis = Duration.toMillis(reshardOptions.waveTimeout ?? "2 minutes")
  const unavailableMillis = Duration.toMillis(reshardOptions.unavailableAfter ?? "30 seconds")
  /** The handovers whose filter the consumer applies (a rollback runs a reverse one beside). */
  const handovers: Array<Handover.Handover> = []
  let markers = 0
  let reshardState: Reshard.ReshardState = { _tag: "Idle" }
  let lastOutcome: Reshard.ReshardOutcome | undefined

  /** Runs `run` in the consumer, after every event queued before; waits for it. */
  const mark = (run: () => ReadonlyArray<ShardEvent>) =>
    Effect.gen(function* () {
      const done = yield* Deferred.make<void>()
      const marker = new Marker(run, done)
      // Counted first: the consumer may reach it as soon as it is in.
      markers++
      // A `dropping` buffer refuses when full: the marker waits for room (it must not be lost).
      while (!(yield* Queue.offer(merged, marker))) yield* Effect.sleep(10)
      yield* Deferred.await(done)
    })

  /** The consumer's side: the handover filter, or nothing at all when no reshard runs. */
  const filter = (chunk: ReadonlyArray<Item>): ReadonlyArray<ShardEvent> => {
    if (handovers.length === 0 && markers === 0) return chunk as ReadonlyArray<ShardEvent>
    const out: Array<Handover.Tagged> = []
    for (const item of chunk) {
      if (item instanceof Marker) {
        markers--
        out.push(...item.run())
        Deferred.doneUnsafe(item.done, Effect.void)
        continue
      }
      const handover = handovers.find((h) => h.involves(item))
      if (handover === undefined) out.push(item)
      else handover.process(item, out)
    }
    return out as ReadonlyArray<ShardEvent>
  }
  const pullFiltered = <E>(
    pull: Effect.Effect<ReadonlyArray<Item>, E>,
  ): Effect.Effect<readonly [ShardEvent, ...Array<ShardEvent>], E> =>
    Effect.flatMap(pull, (chunk) => {
      const out = filter(chunk)
      return out.length > 0
        ? Effect.succeed(out as readonly [ShardEvent, ...Array<ShardEvent>])
        : pullFiltered(pull)
    })

  const isLive = (gen: Generation, id: number) => gen.shards.has(id) && !gen.stopped.has(id)

  /**
   * Waits until the wave's new shards are READY and every guild they announced is handed
   * over (`Handover.progress`), failing early when `failed` does.
   */
  const awaitHandedOver = (
    handover: Handover.Handover | undefined,
    gen: Generation,
    join: ReadonlyArray<number>,
    failed: Deferred.Deferred<void, string>,
  ) =>
    Effect.gen(function* () {
      const deadline = clock.currentTimeMillisUnsafe() + waveTimeoutMillis
      while (true) {
        if (Deferred.isDoneUnsafe(failed)) return yield* Deferred.await(failed)
        const statuses = yield* Effect.forEach(join, (id) => {
          const entry = gen.shards.get(id)
          return entry ? SubscriptionRef.get(entry.shard.status) : Effect.succeed(undefined)
        })
        const ready = statuses.every((s) => s?.state._tag === "Ready")
        const handed =
          handover === undefined ||
          (handover.announced(join) && handover.progress(join, quietMillis, unavailableMillis).waiting === 0)
        if (ready && handed) return
        if (clock.currentTimeMillisUnsafe() > deadline) {
          const progress = handover?.progress(join, quietMillis, unavailableMillis)
          return yield* Effect.fail(
            `wave timed out: ${statuses.filter((s) => s?.state._tag !== "Ready").length} shard(s) not ready, ${
              progress?.waiting ?? 0
            } guild(s) not handed over`,
          )
        }
        yield* Effect.raceFirst(Effect.sleep(50), Deferred.await(failed))
      }
    })

  /** One wave: `to`'s shards `join` start, `from`'s `retire` close once their guilds moved. */
  const runWave = (
    handover: Handover.Handover,
    from: Generation,
    to: Generation,
    wave: Reshard.Wave,
    failed: Deferred.Deferred<void, string>,
  ) =>
    Effect.gen(function* () {
      const live = wave.retire.filter((id) => isLive(from, id))
      // Dead old shards have no copy to match: their guilds' new events pass straight through.
      if (live.length > 0) handover.begin(live, wave.join)
      for (const id of wave.join) {
        to.joining.set(id, (error) => Deferred.fail(failed, `shard ${id}/${to.count}: ${error.message}`))
        yield* startIn(to, id)
      }
      yield* awaitHandedOver(live.length > 0 ? handover : undefined, to, wave.join, failed).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            for (const id of wave.join) to.joining.delete(id)
          }),
        ),
      )
      for (const id of wave.retire) yield* closeIn(from, id, true)
      if (live.length > 0) yield* mark(() => handover.retire(live, wave.join))
    })

  /** Closes a wave's new shards before they took over; the old ones serve on. */
  const abortWave = (handover: Handover.Handover, to: Generation, wave: Reshard.Wave) =>
    Effect.gen(function* () {
      for (const id of wave.join) yield* closeIn(to, id, true)
      // Bounded: when the manager is shutting down, no consumer may be left to reach it.
      yield* bounded(
        mark(() => {
          handover.abort(wave.retire, wave.join)
          return []
        }),
      )
    })

  const finish = (
    trigger: Reshard.Trigger,
    from: number,
    to: number,
    startedAt: number,
    outcome: Reshard.ReshardOutcome["outcome"],
    reason: string | undefined,
  ) =>
    Effect.suspend(() => {
      const now = clock.currentTimeMillisUnsafe()
      lastOutcome = { from, to, trigger, outcome, reason, startedAt, tookMillis: now - startedAt }
      return Metric.update(Metrics.reshards(trigger, outcome), 1)
    })

  const refuse = (
    trigger: Reshard.Trigger,
    to: number,
    reason: Reshard.ReshardRefused["reason"],
    detail: string,
  ) =>
    Effect.gen(function* () {
      const error = new Reshard.ReshardRefused({ reason, detail })
      yield* Effect.logWarning(error.message)
      if (reason !== "in-progress") {
        const now = clock.currentTimeMillisUnsafe()
        yield* finish(trigger, current.count, to, now, "refused", detail)
      }
      return yield* error
    })

  /** Taken synchronously by the reshard that runs: a second one (two 4011s at once) is refused. */
  let busy = false
  const reshardWith = (count: number, trigger: Reshard.Trigger): Effect.Effect<void, Reshard.ReshardError> =>
    Effect.suspend(() => {
      if (busy)
        return refuse(trigger, count, "in-progress", `a reshard to ${next?.count ?? "?"} is under way`)
      busy = true
      return Effect.ensuring(
        planAndRun(count, trigger),
        Effect.sync(() => {
          busy = false
        }),
      )
    })

  const planAndRun = (count: number, trigger: Reshard.Trigger): Effect.Effect<void, Reshard.ReshardError> =>
    Effect.gen(function* () {
      const from = current.count
      if (next !== undefined) {
        return yield* refuse(
          trigger,
          count,
          "in-progress",
          `a failed rollback left shards of ${from} and ${next.count} serving`,
        )
      }
      if (!Number.isInteger(count) || count < 1 || count === from) {
        return yield* refuse(
          trigger,
          count,
          "same-count",
          `${count} is not a new shard count (running ${from})`,
        )
      }
      const running = [...current.shards.keys()].sort((a, b) => a - b)
      const thePlan = Reshard.plan(from, count, running)
      if (thePlan.mode === "whole-set" && running.length < from) {
        return yield* refuse(
          trigger,
          count,
          "partial-set",
          `this process runs ${running.length} of ${from} shards; only a multiple of ${from} can be reached in waves`,
        )
      }
      const needed = thePlan.waves.reduce((n, w) => n + w.join.length, 0)
      const margin = reshardOptions.safetyMargin ?? from
      const remaining = yield* identifyThrottle.remaining
      if (remaining < needed + margin) {
        return yield* refuse(
          trigger,
          count,
          "budget",
          `${remaining} identifies left today; ${needed} new shards need ${needed + margin} (safety margin ${margin})`,
        )
      }
      return yield* Effect.uninterruptibleMask((restore) => carryOut(thePlan, trigger, restore))
    })

  /** Runs the plan's waves (interruptible, through `restore`); commits, or rolls back. */
  const carryOut = (
    thePlan: Reshard.Plan,
    trigger: Reshard.Trigger,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  ): Effect.Effect<void, Reshard.ReshardError> =>
    Effect.gen(function* () {
      const { from, to: count } = thePlan
      const startedAt = clock.currentTimeMillisUnsafe()
      reshardState = {
        _tag: "Running",
        from,
        to: count,
        trigger,
        mode: thePlan.mode,
        startedAt,
        wave: 0,
        waves: thePlan.waves.length,
      }
      const failed = yield* Deferred.make<void, string>()
      const nextGen = generation(count)
      nextGen.provisional = true
      nextGen.onFatal = (id, error) => Deferred.fail(failed, `new shard ${id}/${count}: ${error.message}`)
      next = nextGen
      const handover = Handover.make(from, count, {
        now: () => clock.currentTimeMillisUnsafe(),
        window: reshardOptions.window,
      })
      handovers.push(handover)
      yield* Effect.logInfo(
        `resharding ${from} → ${count} (${trigger}; ${thePlan.mode}, ${thePlan.waves.length} wave(s), at most ${thePlan.extraConnections} extra connection(s))`,
      )
      const done: Array<Reshard.Wave> = []
      const result = yield* Effect.exit(
        restore(
          Effect.forEach(
            thePlan.waves,
            (wave, i) =>
              Effect.suspend(() => {
                reshardState = {
                  ...(reshardState as Extract<Reshard.ReshardState, { _tag: "Running" }>),
                  wave: i + 1,
                }
                return runWave(handover, current, nextGen, wave, failed).pipe(
                  Effect.tap(() => Effect.sync(() => done.push(wave))),
                  Effect.onError(() => abortWave(handover, nextGen, wave)),
                )
              }),
            { discard: true },
          ),
        ),
      )
      if (Exit.isSuccess(result)) {
        // Commit: the new count serves; its fatal stops are the manager's again.
        nextGen.provisional = false
        nextGen.onFatal = (id, error) => onServingFatal(id, error)
        // In id order, as a manager started with this count lists them (`statuses`, `health`).
        const started = [...nextGen.shards].sort(([a], [b]) => a - b)
        nextGen.shards.clear()
        for (const [id, entry] of started) nextGen.shards.set(id, entry)
        current = nextGen
        next = undefined
        shardIds = started.map(([id]) => id)
        handovers.splice(handovers.indexOf(handover), 1)
        reshardState = { _tag: "Idle" }
        yield* finish(trigger, from, count, startedAt, "completed", undefined)
        yield* Effect.logInfo(
          `resharded ${from} → ${count} in ${clock.currentTimeMillisUnsafe() - startedAt} ms (${JSON.stringify(handover.stats())})`,
        )
        return
      }
      if (Cause.hasInterrupts(result.cause)) return yield* abandon(nextGen, trigger, from, startedAt)
      const reason = Option.getOrElse(Exit.findErrorOption(result), () => "defect")
      return yield* rollback(handover, from, nextGen, done, { trigger, reason, startedAt }, restore)
    })

  /**
   * Back to the old count: the current wave was already aborted; each completed wave is
   * reversed (its old shard started again and handed the guilds back), last first.
   */
  const rollback = (
    forward: Handover.Handover,
    from: number,
    nextGen: Generation,
    done: ReadonlyArray<Reshard.Wave>,
    { trigger, reason, startedAt }: { trigger: Reshard.Trigger; reason: string; startedAt: number },
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  ): Effect.Effect<never, Reshard.ReshardFailed> =>
    Effect.gen(function* () {
      reshardState = { _tag: "RollingBack", from, to: nextGen.count, trigger, reason, startedAt }
      yield* Effect.logWarning(`reshard ${from} → ${nextGen.count} failed (${reason}): rolling back`)
      const failed = yield* Deferred.make<void, string>()
      nextGen.onFatal = (id, error) => Deferred.fail(failed, `shard ${id}/${nextGen.count}: ${error.message}`)
      const reverse = Handover.make(nextGen.count, from, {
        now: () => clock.currentTimeMillisUnsafe(),
        window: reshardOptions.window,
      })
      handovers.push(reverse)
      const back = yield* Effect.exit(
        restore(
          Effect.forEach(
            [...done].reverse(),
            (wave) => {
              const reversed = { retire: wave.join, join: wave.retire }
              return runWave(reverse, nextGen, current, reversed, failed).pipe(
                Effect.onError(() => abortWave(reverse, current, reversed)),
              )
            },
            { discard: true },
          ),
        ),
      )
      if (Exit.isFailure(back) && Cause.hasInterrupts(back.cause)) {
        return yield* abandon(nextGen, trigger, from, startedAt)
      }
      // What the new shards delivered is matched against the old copies a little longer.
      yield* restore(Effect.sleep(quietMillis)).pipe(Effect.ignore)
      yield* bounded(mark(() => forward.retire([...Array(from).keys()], [])))
      handovers.length = 0
      const rolledBack = Exit.isSuccess(back)
      if (rolledBack) {
        next = undefined
      } else {
        // Both counts serve (each guild by one shard): their fatal stops are the manager's.
        nextGen.onFatal = (id, error) => onServingFatal(id, error)
        nextGen.provisional = false
        yield* Effect.logWarning(
          `rollback incomplete: shards ${[...current.shards.keys()].map((id) => `${id}/${from}`).join(", ")} and ${[
            ...nextGen.shards.keys(),
          ]
            .map((id) => `${id}/${nextGen.count}`)
            .join(", ")} serve, each guild by one`,
        )
      }
      reshardState = { _tag: "Idle" }
      yield* finish(trigger, from, nextGen.count, startedAt, "rolled-back", reason)
      return yield* new Reshard.ReshardFailed({ from, to: nextGen.count, reason, rolledBack })
    })

  /**
   * Told to stop midway (the manager's scope closing): no rollback to wait for; the new
   * shards log out, the old ones close with the manager as always.
   */
  const abandon = (nextGen: Generation, trigger: Reshard.Trigger, from: number, startedAt: number) =>
    Effect.gen(function* () {
      for (const id of [...nextGen.shards.keys()]) yield* closeIn(nextGen, id, true)
      next = undefined
      handovers.length = 0
      reshardState = { _tag: "Idle" }
      yield* finish(trigger, from, nextGen.count, startedAt, "rolled-back", "interrupted")
      return yield* Effect.interrupt
    })

  /** A marker the consumer may never reach (the manager shutting down): waited for a while only. */
  const bounded = (effect: Effect.Effect<void>) =>
    Effect.timeoutOrElse(effect, { duration: "2 seconds", orElse: () => Effect.void })

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
            yield* reshardWith(count, "4011")
          }).pipe(
            Effect.provideContext(http),
            Effect.catchCause((cause) =>
              Effect.gen(function* () {
                const refused = Option.getOrUndefined(Cause.findErrorOption(cause))
                // Another 4011 of the same moment: the reshard under way serves it too.
                if (refused?._tag === "ReshardRefused" && refused.reason === "in-progress" && busy) return
                yield* Effect.logWarning("4011-triggered reshard did not complete", cause)
                // The shard is gone and nothing replaces it: the manager stops, as without autoReshard.
                yield* Deferred.fail(stopped, error)
              }),
            ),
          ),
          managerScope,
        ).pipe(Effect.asVoid)
      : Deferred.fail(stopped, error).pipe(Effect.asVoid)
  current.onFatal = onServingFatal

  if (config.reshardCheckInterval !== undefined) {
    yield* Effect.forkIn(
      Reshard.watchRecommendation({
        interval: config.reshardCheckInterval,
        recommended: GatewayInfo.fetchGatewayBot({ token: config.token, apiBaseUrl: config.apiBaseUrl }).pipe(
          Effect.map((bot) => bot.shards),
          Effect.provideContext(http),
        ),
        current: () => current.count,
        reshard: (count) => reshardWith(count, "periodic"),
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
    events: Stream.transformPull(Stream.fromQueue(merged), (pull) => Effect.succeed(pullFiltered(pull))),
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
    restart: serialized((id) => Effect.andThen(closeIn(current, id, false), startIn(current, id))),
    reshard: (count) => reshardWith(count, "explicit"),
    reshardStatus: Effect.sync(() => ({ state: reshardState, last: lastOutcome })),
    await: Deferred.await(stopped),
  } satisfies ShardManager
})

const selectShards = (selection: ShardManagerConfig["shards"], count: number): ReadonlyArray<number> => {
  const all = Array.from({ length: count }, (_, i) => i)
  if (selection === undefined) return all
  if ("from" in selection) return all.filter((id) => id >= selection.from && id <= selection.to)
  return [...new Set(selection)].filter((id) => id >= 0 && id < count).sort((a, b) => a - b)
}
