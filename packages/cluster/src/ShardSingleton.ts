/**
 * One Discord shard as one `effect/cluster` Singleton: the cluster places it on exactly one
 * runner at a time and starts it elsewhere when that runner dies or leaves. The shard resumes
 * there from the session its last owner saved instead of identifying.
 *
 * Each start first acquires the shard from `ShardOwners` (a new epoch, a lease; on PostgreSQL:
 * `PgShardOwners`), and the shard saves through that ownership's store. The span
 * `vigil.handoff` covers it all, from the start on this runner until READY or RESUMED.
 *
 * The saved sequence never passes the last event the app has finished (`internal/Handled.ts`):
 * the shard's buffer may hold events the app has not seen, and a runner that goes without
 * handing them over (fenced, killed) must not have saved them as delivered. So the app handles
 * its events one at a time (`shard.events`, one per pull); a crash replays at most the event in
 * its hands and the save window (`sessionSave`), never loses one.
 *
 * While it runs, the shard is in this runner's registry, where `ShardCommands`' entity (which
 * `layer` registers too) finds it for commands sent from any runner; with `ClusterHealth` in
 * the context, its status is reported there every interval.
 *
 * Three ways out, each with its own order:
 * - **Fenced** (ownership lapsed: superseded, or lease not renewed in time): the app's stream
 *   ends at once (nothing more is delivered; each event is checked against the lease before
 *   the app sees it), commands are refused, then the socket closes (a resumable code); the
 *   shard's status says `Stopped` ("fenced: …") and the log "shard fenced". If only the lease had run out and it is renewed again with the same
 *   epoch (nobody took over), the shard starts again here; else it stays stopped until the
 *   cluster moves the singleton.
 * - **Graceful leave** (the runner shuts down, the cluster rebalances): the socket closes with
 *   a resumable code, the app handles what was already in its buffer (up to `drainTimeout`),
 *   the session is saved up to there, then the lease ends so the next owner starts at once and
 *   RESUMEs from exactly the last handled event: nothing lost, nothing twice.
 * - **Stopped for good** (bad token, disallowed intents, budget spent): logged; the singleton
 *   keeps its place, stopped, because one whose effect ends is never restarted (and the engine
 *   logs nothing).
 */
import { type IdentifyThrottle, SessionStore, Shard, type Transport } from "@vigil/gateway"
import { ShardStopped } from "@vigil/gateway/GatewayError"
import {
  Clock,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef,
} from "effect"
import { type Sharding, Singleton } from "effect/cluster"
import { ClusterHealth } from "./ClusterHealth.ts"
import * as EventKey from "./EventKey.ts"
import * as Handled from "./internal/Handled.ts"
import type { Lapse } from "./internal/Lease.ts"
import { nameOf } from "./internal/names.ts"
import * as ShardCommands from "./ShardCommands.ts"
import { type Ownership, ShardOwners } from "./ShardOwners.ts"

/** The singleton's name: `vigil-shard-<id>-of-<count>`. */
export { nameOf }

export interface ShardSingletonOptions<E, R> {
  readonly shards: ReadonlyArray<SessionStore.ShardKey>
  readonly config: Omit<Shard.ShardConfig, "shard">
  /**
   * What the app does with a shard where it runs (consume its events, ...). `running.events`
   * is `shard.events` with each event's key, `(shardId, sessionId, seq)` (see `EventKey`):
   * what an app that must not handle an event twice after a crash checks against.
   */
  readonly run: (shard: Shard.Shard, running: Running) => Effect.Effect<void, E, R>
  /**
   * On a graceful leave, the longest wait for the app to handle the events already handed to
   * its stream (their sequence is saved: the next owner resumes after them). Default 5 s.
   */
  readonly drainTimeout?: Duration.Input | undefined
  /** Told when the shard stops for good here (after the log): e.g. a 4011 starts a reshard (`ClusterReshard`). */
  readonly onStoppedForGood?: ((error: Stop) => Effect.Effect<void>) | undefined
}

/** Why a shard stops for good. */
type Stop = Effect.Error<Shard.Shard["await"]>

/** The shard where it runs, as the app's `run` gets it beside the shard itself. */
export interface Running {
  readonly events: Stream.Stream<EventKey.KeyedEvent>
}

/** What a shard needs where it runs. */
type Needs<R> =
  | Transport.GatewayTransport
  | ShardOwners
  | IdentifyThrottle.IdentifyThrottle
  | Exclude<R, Scope.Scope>

type Requires<R> = Sharding.Sharding | Needs<R>

/**
 * The shard as the app sees it: nothing delivered and nothing sent once the ownership lapses,
 * and every event it finishes recorded (the saved sequence never passes it).
 */
const fenced = (shard: Shard.Shard, valid: () => boolean, handled: Handled.Handled): Shard.Shard => {
  const refused = new ShardStopped({ shard: [shard.id, shard.count], reason: "fenced" })
  const guard = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | ShardStopped> =>
    Effect.suspend((): Effect.Effect<A, E | ShardStopped> => (valid() ? effect : Effect.fail(refused)))
  return {
    ...shard,
    // One event per pull, so the check runs right before the app gets each one.
    events: shard.events.pipe(
      Stream.rechunk(1),
      Stream.takeWhile(() => valid()),
      handled.track,
    ),
    send: (op, d) => guard(shard.send(op, d)),
    updatePresence: (presence) => guard(shard.updatePresence(presence)),
    updateVoiceState: (state) => guard(shard.updateVoiceState(state)),
    requestSoundboardSounds: (request) => guard(shard.requestSoundboardSounds(request)),
    requestGuildMembers: (request) => guard(shard.requestGuildMembers(request)),
  }
}

const describe = (lapse: Lapse) =>
  lapse._tag === "Superseded"
    ? "another runner took it (a newer epoch)"
    : `its lease was not renewed for ${lapse.lastRenewedMillisAgo} ms`

/** Runs the shard under one ownership until the ownership lapses. */
const runOwned = <E, R>(
  key: SessionStore.ShardKey,
  options: ShardSingletonOptions<E, R>,
  ownership: Ownership,
  handoff: (shard: Shard.Shard) => Effect.Effect<void>,
  local: ShardCommands.LocalShards,
) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const shardScope = yield* Scope.fork(scope)
    const handled = yield* Handled.make(options.config.sessionSave?.interval ?? Duration.seconds(1))
    const shard = yield* Shard.make({ ...options.config, shard: key }).pipe(
      Scope.provide(shardScope),
      Effect.provideService(SessionStore.SessionStore, handled.store(ownership.store)),
    )
    const guarded = fenced(shard, ownership.valid, handled)
    // The session it starts with: the stored one it will resume (read before its loop runs).
    const startsWith = (yield* SubscriptionRef.get(shard.status)).sessionId
    const consumer = yield* options
      .run(guarded, { events: EventKey.keyed(guarded.events, key[0], startsWith) })
      .pipe(
        Effect.catchCause((cause) => Effect.logError("the shard's consumer failed", cause)),
        Effect.forkIn(scope),
      )
    let lapsed: Lapse | undefined
    const health = yield* Effect.serviceOption(ClusterHealth)
    if (Option.isSome(health)) {
      const report = Effect.flatMap(SubscriptionRef.get(shard.status), (status) =>
        health.value.report(key, ownership.epoch, status),
      )
      // Fenced: its last word is its stopped status (refused if a newer owner has written); leaving: no row.
      yield* Effect.addFinalizer(() => (lapsed ? report : health.value.leave(key, ownership.epoch)))
      yield* Effect.forkIn(Effect.repeat(report, Schedule.spaced(health.value.interval)), scope)
    }
    const drainTimeout = options.drainTimeout ?? Duration.seconds(5)
    // Runs before the health report's finalizer (registered earlier), after the registry's.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() =>
        // Stopped by the engine after the ownership ran out (a runner woken from a freeze):
        // fenced, not leaving — nothing it holds may be handed over or saved.
        lapsed === undefined && !ownership.valid()
          ? Effect.map(ownership.lapsed, (lapse) => {
              lapsed = lapse
            })
          : Effect.void,
      ).pipe(
        Effect.andThen(() =>
          lapsed
            ? // Fenced: deliver nothing more, close the socket, and say so in the shard's status.
              Fiber.interrupt(consumer).pipe(
                Effect.andThen(Scope.close(shardScope, Exit.void)),
                Effect.andThen(
                  SubscriptionRef.update(shard.status, (s) => ({
                    ...s,
                    state: { _tag: "Stopped" as const, reason: `fenced: ${describe(lapsed!)}` },
                  })),
                ),
              )
            : // Leaving: close the socket, let the app finish what it was handed, save up to there.
              Scope.close(shardScope, Exit.void).pipe(
                Effect.andThen(Fiber.await(consumer).pipe(Effect.timeoutOption(drainTimeout))),
                Effect.andThen(Fiber.interrupt(consumer)),
                Effect.andThen(handled.flush),
              ),
        ),
      ),
    )
    // Commands from other runners reach the shard through this registry (`ShardCommands`).
    // Registered last, so it is left first: a command that arrives while the shard drains or
    // fences is refused with `ShardNotRunning` (the sender may retry at the next owner).
    const name = nameOf(key)
    local.set(name, guarded)
    yield* Effect.addFinalizer(() => Effect.sync(() => local.get(name) === guarded && local.delete(name)))
    const stoppedForGood = shard.await.pipe(
      Effect.catch((error) =>
        Effect.andThen(
          Effect.logError(`shard stopped for good: ${error.message}`),
          options.onStoppedForGood?.(error) ?? Effect.void,
        ),
      ),
      Effect.andThen(Effect.never),
    )
    const lapse = yield* Effect.raceFirst(
      ownership.lapsed,
      Effect.andThen(Effect.forkScoped(handoff(shard)), stoppedForGood),
    )
    lapsed = lapse
    return lapse
  }).pipe(Effect.scoped)

/** Until the shard is READY or RESUMED (or stopped for good): the end of its hand-off. */
const ready = (shard: Shard.Shard) =>
  SubscriptionRef.changes(shard.status).pipe(
    Stream.filter((s) => s.state._tag === "Ready" || s.state._tag === "Stopped"),
    Stream.runHead,
    Effect.map(Option.getOrUndefined),
  )

/**
 * What one shard's singleton runs on the runner it is placed on (`layer` makes one per shard);
 * never ends.
 */
export const runShard = <E, R>(
  key: SessionStore.ShardKey,
  options: ShardSingletonOptions<E, R>,
  local: ShardCommands.LocalShards = new Map(),
): Effect.Effect<never, never, Needs<R>> =>
  Effect.gen(function* () {
    const owners = yield* ShardOwners
    const clock = yield* Clock.Clock
    const attributes = { "vigil.shard.id": key[0], "vigil.shard.count": key[1] }
    // The hand-off span is opened here and ended by whichever comes first: READY/RESUMED,
    // a stop for good, or a fence.
    const span = yield* Effect.makeSpanScoped("vigil.handoff", { attributes })
    const ownership = yield* owners.acquire(key).pipe(Effect.withParentSpan(span))
    span.attribute("vigil.handoff.epoch", ownership.epoch)
    span.attribute("vigil.handoff.waited_ms", Math.ceil(ownership.waitedMillis))
    let handedOff = false
    const handoff = (shard: Shard.Shard) =>
      Effect.gen(function* () {
        if (handedOff) return
        const status = yield* ready(shard)
        if (handedOff) return
        handedOff = true
        const outcome =
          status?.state._tag === "Ready" ? (status.resumes > 0 ? "resumed" : "identified") : "stopped"
        span.attribute("vigil.handoff.outcome", outcome)
        span.end(clock.currentTimeNanosUnsafe(), Exit.void)
      })

    while (true) {
      const lapse = yield* runOwned(key, options, ownership, handoff, local)
      yield* Effect.logWarning(`shard fenced: ${describe(lapse)}; it delivers nothing more on this runner`)
      if (!handedOff) {
        handedOff = true
        span.attribute("vigil.handoff.outcome", "fenced")
        span.end(clock.currentTimeNanosUnsafe(), Exit.void)
      }
      yield* ownership.closed
      if (lapse._tag === "Superseded" || !(yield* ownership.recovered)) {
        // The cluster moves the singleton (its lock is gone too); until then it stays stopped.
        return yield* Effect.never
      }
      yield* Effect.logInfo(`shard lease renewed again (epoch ${ownership.epoch}): starting the shard again`)
    }
  }).pipe(Effect.scoped, Effect.annotateLogs({ package: "@vigil/cluster", shard: nameOf(key) }))

/**
 * One singleton per shard, and the `ShardCommands` entity through which any runner sends to
 * them. With `ClusterHealth` in the context, each running shard reports its status there.
 */
export const layer = <E, R>(options: ShardSingletonOptions<E, R>): Layer.Layer<never, never, Requires<R>> =>
  Layer.unwrap(
    Effect.sync(() => {
      const local: ShardCommands.LocalShards = new Map()
      return (
        options.shards
          .map((key) => Singleton.make(nameOf(key), runShard(key, options, local)))
          // (`Layer.mergeAll` takes no spread array.)
          .reduce<Layer.Layer<never, never, Requires<R>>>(
            (all, one) => Layer.merge(all, one),
            ShardCommands.layer(local),
          )
      )
    }),
  )
