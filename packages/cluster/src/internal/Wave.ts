/**
 * One wave of a cluster reshard N → M (M = kN), carried out inside old shard s's singleton
 * on whatever runner holds it, with the gateway's own machinery: a one-shard `ShardManager`
 * resumes s's session and `reshard(M)` runs the wave there (new shards s, s + N, …,
 * s + (k − 1)N beside it, through the cluster's identify throttle; each guild handed over
 * once its new shard streams it, every event delivered once and in the guild's order; then
 * s logs out). Both streams meet in one process, so the dedup sees both copies.
 *
 * Then the new shards close resumable and the app finishes every event they queued; their
 * sessions are saved under `[x, M]` through ownerships (fencing epochs) taken for those keys
 * at the start, the wave is marked done, and the ownerships end: the `[x, M]` singletons,
 * wherever the cluster places them, RESUME from exactly there (nothing lost, nothing twice).
 *
 * Until the commit, the stored session of s is left as it was before the wave (its saves go to
 * memory): a runner killed mid-wave has its s resumed elsewhere from there (events of the wave
 * handed to the app again, never lost) and the wave is carried out anew. A wave that fails
 * (the manager rolls it back: the new shards log out, s serves on) saves s's session as the
 * app has finished it, and the singleton serves s again.
 */
import {
  type IdentifyThrottle,
  IdentifyThrottle as IdentifyThrottleTag,
  type Protocol,
  type Reshard,
  SessionStore,
  ShardManager,
  type Transport,
} from "@vigil/gateway"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import type * as EventKey from "../EventKey.ts"
import type * as ShardCommands from "../ShardCommands.ts"
import { type Ownership, ShardOwners } from "../ShardOwners.ts"
import type { ShardSingletonOptions } from "../ShardSingleton.ts"
import { nameOf } from "./names.ts"

export interface WaveOptions {
  readonly reshard?: Reshard.ReshardOptions | undefined
  /** How long the app may take to finish the events the wave handed it. Default 30 s. */
  readonly drainTimeout?: Duration.Input | undefined
}

type Needs<R> =
  | Transport.GatewayTransport
  | ShardOwners
  | IdentifyThrottle.IdentifyThrottle
  | Exclude<R, Scope.Scope>

const defaultGatewayUrl = "wss://gateway.discord.gg"

/** Carries out old shard `id`'s wave `from` → `to`; fails with a reason when it did not commit. */
export const run = <E, R>(
  id: number,
  from: number,
  to: number,
  options: ShardSingletonOptions<E, R>,
  wave: WaveOptions,
  local: ShardCommands.LocalShards,
  /** Marks the wave done in the database (after the sessions are saved); false: it was not running. */
  commit: Effect.Effect<boolean, unknown>,
): Effect.Effect<{ readonly tookMillis: number }, string, Needs<R>> =>
  Effect.gen(function* () {
    const owners = yield* ShardOwners
    const throttle = yield* IdentifyThrottleTag.IdentifyThrottle
    const clock = yield* Clock.Clock
    const started = clock.currentTimeMillisUnsafe()
    const oldKey = [id, from] as const
    const joins = Array.from({ length: to / from }, (_, j) => id + j * from)
    // The epochs first: nobody else may write these sessions, nor run these shards, meanwhile.
    const old = yield* owners.acquire(oldKey)
    const news = new Map<number, Ownership>()
    for (const x of joins) news.set(x, yield* owners.acquire([x, to]))
    const valid = () => old.valid() && [...news.values()].every((o) => o.valid())

    // Every save and clear stays in memory until the commit; only s's stored session is read.
    const memory = SessionStore.makeMemory()
    const store: SessionStore.SessionStoreService = {
      load: (key) => (key[1] === from ? old.store.load(key) : memory.load(key)),
      save: memory.save,
      clear: memory.clear,
    }

    const managerScope = yield* Scope.fork(yield* Effect.scope)
    const manager = yield* ShardManager.make({
      ...options.config,
      shardCount: from,
      shards: [id],
      gatewayBot: {
        url: options.config.gatewayUrl ?? defaultGatewayUrl,
        shards: from,
        // Unused: the cluster's throttle (below) paces identifies and holds the budget.
        session_start_limit: { total: 1, remaining: 1, reset_after: 0, max_concurrency: 1 },
      },
      identifyThrottle: throttle,
      reshardOptions: wave.reshard,
    }).pipe(
      Scope.provide(managerScope),
      Effect.provideService(SessionStore.SessionStore, store),
      Effect.provide(FetchHttpClient.layer),
      Effect.mapError((error) => `the wave's shard manager did not start: ${error.message}`),
    )
    const oldShard = manager.shard(id)!

    // The app's stream: one event per pull (so the stream's end pulled means the app finished
    // the last one), nothing once an ownership lapsed.
    const drained = yield* Deferred.make<void>()
    const dispatches: Stream.Stream<ShardManager.ShardEvent> = manager.events.pipe(
      Stream.rechunk(1),
      Stream.takeWhile(valid),
      Stream.onEnd(Deferred.succeed(drained, undefined)),
    )
    const keyed: Stream.Stream<EventKey.KeyedEvent> = Stream.mapEffect(dispatches, (event) =>
      Effect.map(manager.statuses, (statuses) => ({
        shardId: event.shardId,
        sessionId:
          statuses.find((s) => s.shard[0] === event.shardId && s.shard[1] === event.shardCount)?.sessionId ??
          "",
        seq: event.dispatch.seq,
        dispatch: event.dispatch,
      })),
    )
    const view = {
      ...oldShard,
      events: Stream.map(dispatches, (event): Protocol.Dispatch => event.dispatch),
    }
    const consumer = yield* options.run(view, { events: keyed }).pipe(
      Effect.catchCause((cause) =>
        Effect.logError("the shard's consumer failed during a reshard wave", cause),
      ),
      Effect.forkScoped,
    )
    // Commands for s reach the wave's manager until s logs out.
    local.set(nameOf(oldKey), view)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => local.get(nameOf(oldKey)) === view && local.delete(nameOf(oldKey))),
    )

    /** Closes the manager (its shards close resumable, their final sessions in memory) and waits for the app. */
    const closeAndDrain = Effect.gen(function* () {
      yield* Scope.close(managerScope, Exit.void)
      const finished = yield* Deferred.await(drained).pipe(
        Effect.timeoutOption(wave.drainTimeout ?? Duration.seconds(30)),
      )
      yield* Fiber.interrupt(consumer)
      if (Option.isNone(finished))
        yield* Effect.logWarning("the app did not finish the wave's events in time")
    })

    const lapsed = Effect.raceAll([old.lapsed, ...[...news.values()].map((o) => o.lapsed)]).pipe(
      Effect.map((lapse) => `an ownership of the wave lapsed (${lapse._tag})`),
    )
    const outcome = yield* Effect.raceFirst(
      manager.reshard(to).pipe(
        Effect.mapError((error) => error.message),
        Effect.exit,
      ),
      Effect.map(lapsed, (reason) => Exit.fail(reason)),
    )
    if (Exit.isFailure(outcome)) {
      // The manager rolled the wave back: s serves again; its session as the app finished it.
      yield* closeAndDrain
      const kept = yield* memory.load(oldKey)
      if (Option.isSome(kept) && old.valid()) yield* old.store.save(oldKey, kept.value)
      return yield* Effect.fail(Option.getOrElse(Exit.findErrorOption(outcome), () => "interrupted"))
    }

    for (const x of joins) yield* manager.stop(x)
    yield* closeAndDrain
    for (const x of joins) {
      const session = yield* memory.load([x, to])
      if (Option.isNone(session)) return yield* Effect.fail(`shard ${x}/${to} has no session to hand on`)
      yield* news.get(x)!.store.save([x, to], session.value)
    }
    if (!valid()) return yield* Effect.fail("an ownership of the wave lapsed before the commit")
    yield* old.store.clear(oldKey)
    if (!(yield* Effect.orElseSucceed(commit, () => false)))
      return yield* Effect.fail("the wave could not be marked done")
    return { tookMillis: clock.currentTimeMillisUnsafe() - started }
  }).pipe(Effect.scoped)
