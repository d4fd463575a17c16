/**
 * One wave of a cluster reshard N → M (M = kN), carried out inside old shard s's singleton
 * on whatever runner holds it, with the gateway's own machinery: a one-shard `ShardManager`
 * resumes s's session and `reshard(M)` runs the wave there (new shards s, s + N, …,
 * s + (k − 1)N beside it, through the cluster's identify throttle; each guild handed over
 * once its new shard streams it, every event delivered once and in the guild's order; then
 * s is retired). Both streams meet in one process, so the dedup sees both copies.
 *
 * Then the new shards close resumable and the app finishes every event they queued; their
 * sessions are saved under `[x, M]` through ownerships (fencing epochs) taken for those keys
 * at the start, the wave is marked handed (below), then done, and the ownerships end: the
 * `[x, M]` singletons, wherever the cluster places them, RESUME from exactly there (nothing
 * lost, nothing twice).
 *
 * A runner killed mid-wave never loses an event:
 * - Until the wave is marked `handed`, s's session stays resumable at the gateway and s's
 *   stored session is the one from before the wave (its saves go to memory): s is resumed
 *   elsewhere from there (the wave's events, and everything its guilds had since, handed to
 *   the app again) and the wave carried out anew. So s does not log out: where the manager
 *   retires it, the wave's transport closes it with a resumable code instead of 1000, and
 *   still reads on to the server's close frame (the tail: events sent before the server saw
 *   the close, on no other session for a guild handed over by the quiet rule).
 * - The mark is written only when the app has finished everything the wave's manager
 *   delivered, to the end of its stream (the tail, and s's events still in the merged buffer,
 *   among them) and each s socket it retired ended with the server's close frame. From there
 *   s's guilds are the new sessions': each is stored from its READY on (`sequence` 1, a new
 *   session's first dispatch) as soon as it has one, then as the app finished it. A wave found
 *   handed is only committed: the new shards resume from those sessions. s's session is left
 *   to expire at the gateway (ending it would take a connection that resumes it only to close
 *   1000; nothing resumes it any more: its row is cleared). An s found dead (a 4011) has no
 *   tail: the wave is marked as soon as the new sessions are stored.
 *
 * A wave that fails (the manager rolls it back: the new shards log out, s serves on), or whose
 * singleton is stopped (SIGTERM, a rebalance) before the mark, saves s's session as the app
 * has finished it, and s serves again (there, or where the singleton moves; s resumable, a
 * retired s too). Nothing is lost; what may come again are the events the new shards
 * delivered ahead of s's own stream (the manager's rollback matches s's copies for
 * `quietMillis` more; a stop does not wait). Stopped once marked, the wave finishes first
 * (commit included). The app not done in time, or a retired s cut short (no close frame),
 * the wave fails unmarked: s serves again from its session as it was before the wave.
 *
 * The whole-set wave (M not a multiple of N: 3 → 5, or fewer) is the same with every old shard
 * as s: the manager runs all N old sessions (resumed here, their singletons having stood
 * aside) and all M new ones in this one process, the gateway's whole-set path. It costs N + M
 * connections and every guild's traffic in one runner while it runs. Every old shard is
 * retired resumable, and the wave marked once all of them ended, as above.
 */
import {
  type IdentifyThrottle,
  IdentifyThrottle as IdentifyThrottleTag,
  type Protocol,
  type Reshard,
  SessionStore,
  ShardManager,
} from "@vigil/gateway"
import { GatewayTransport, type TransportSocket } from "@vigil/gateway/Transport"
import {
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Option,
  Scope,
  Stream,
  SubscriptionRef,
} from "effect"
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

type Needs<R> = GatewayTransport | ShardOwners | IdentifyThrottle.IdentifyThrottle | Exclude<R, Scope.Scope>

const defaultGatewayUrl = "wss://gateway.discord.gg"

/** A close code that keeps the session resumable (any but 1000 and 1001). */
const resumableClose = 4900

/** An outgoing payload's op and data, for telling Identify (2) and Resume (6) apart. */
const parsed = (
  text: string,
):
  | { readonly op?: unknown; readonly d?: { shard?: ReadonlyArray<unknown>; session_id?: unknown } }
  | undefined => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * Carries out the wave `from` → `to` that replaces the old shards `retire` (one, or all of
 * them: the whole set) with the new shards `joins`; fails with a reason when it did not commit.
 */
export const run = <E, R>(
  retire: ReadonlyArray<number>,
  joins: ReadonlyArray<number>,
  from: number,
  to: number,
  options: ShardSingletonOptions<E, R>,
  wave: WaveOptions,
  local: ShardCommands.LocalShards,
  /** The app finished s's stream to its end: marks the wave handed in the database. */
  handed: Effect.Effect<void, unknown>,
  /** Marks the wave done in the database (after the sessions are saved); false: it was not running. */
  commit: Effect.Effect<boolean, unknown>,
): Effect.Effect<{ readonly tookMillis: number }, string, Needs<R>> =>
  Effect.gen(function* () {
    const owners = yield* ShardOwners
    const throttle = yield* IdentifyThrottleTag.IdentifyThrottle
    const clock = yield* Clock.Clock
    const started = clock.currentTimeMillisUnsafe()
    // The epochs first: nobody else may write these sessions, nor run these shards, meanwhile.
    const olds = new Map<number, Ownership>()
    for (const id of retire) olds.set(id, yield* owners.acquire([id, from]))
    const news = new Map<number, Ownership>()
    for (const x of joins) news.set(x, yield* owners.acquire([x, to]))
    const all = [...olds.values(), ...news.values()]
    const valid = () => all.every((o) => o.valid())

    // Saves and clears stay in memory until the commit; only s's stored session is read. Two
    // exceptions keep a killed runner from losing events once s is gone (see the module doc).
    const memory = SessionStore.makeMemory()
    const stored = new Map<number, string>()
    const store: SessionStore.SessionStoreService = {
      load: (key) => (key[1] === from ? olds.get(key[0])!.store.load(key) : memory.load(key)),
      save: (key, session) =>
        Effect.andThen(
          memory.save(key, session),
          Effect.suspend(() => {
            const ownership = key[1] === to ? news.get(key[0]) : undefined
            if (ownership === undefined || stored.get(key[0]) === session.sessionId) return Effect.void
            stored.set(key[0], session.sessionId)
            return ownership.store.save(key, { ...session, sequence: 1 })
          }),
        ),
      clear: memory.clear,
    }

    /** The wave is marked handed (s's session no longer needed): it can only go forward now. */
    let isHanded = false
    /** s's sockets retired (see below): each true once it ended with the server's close frame. */
    const retiredSockets: Array<{ ended: boolean }> = []

    // The transport of the wave's manager: it knows s's sockets (identify as [s, N], or resume
    // one of s's sessions). A 1000 on one (the manager retiring s) leaves as a resumable close
    // that still waits for the server's close frame: s stays resumable until the mark.
    const transport = yield* GatewayTransport
    const oldSessions = new Set<string>()
    for (const [id, ownership] of olds) {
      const storedOld = yield* ownership.store.load([id, from])
      if (Option.isSome(storedOld)) oldSessions.add(storedOld.value.sessionId)
    }
    const watched: GatewayTransport["Service"] = {
      connect: (url) =>
        Effect.map(transport.connect(url), (socket): TransportSocket => {
          let isOld = false
          let retired: { ended: boolean } | undefined
          return {
            receive: Effect.tapError(socket.receive, (error) =>
              Effect.sync(() => {
                // 1006: no close frame came (the link broke, or the close handshake was cut).
                if (retired !== undefined && error._tag === "TransportClosed" && error.code !== 1006)
                  retired.ended = true
              }),
            ),
            send: (text) =>
              Effect.suspend(() => {
                const payload = parsed(text)
                const shard = payload?.d?.shard
                if (payload?.op === 2 && shard?.[1] === from && olds.has(Number(shard[0]))) isOld = true
                if (payload?.op === 6 && oldSessions.has(String(payload.d?.session_id))) isOld = true
                return socket.send(text)
              }),
            close: (code, reason, options) =>
              Effect.suspend(() => {
                if (!isOld || code !== 1000 || retired !== undefined)
                  return socket.close(code, reason, options)
                retired = { ended: false }
                retiredSockets.push(retired)
                return socket.close(resumableClose, reason, { handshake: true })
              }),
          }
        }),
    }

    const managerScope = yield* Scope.fork(yield* Effect.scope)
    const manager = yield* ShardManager.make({
      ...options.config,
      shardCount: from,
      shards: [...retire],
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
      Effect.provideService(GatewayTransport, watched),
      Effect.provide(FetchHttpClient.layer),
      Effect.mapError((error) => `the wave's shard manager did not start: ${error.message}`),
    )
    const oldShards = retire.map((id) => manager.shard(id)!)
    // Each old session as it runs in the wave (a fresh one, if its resume failed).
    for (const oldShard of oldShards) {
      yield* Effect.forkScoped(
        Stream.runForEach(SubscriptionRef.changes(oldShard.status), (status) =>
          Effect.sync(() => status.sessionId !== undefined && oldSessions.add(status.sessionId)),
        ),
      )
    }

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
    // The app sees one shard (the first old one) carrying every event of the wave.
    const events = Stream.map(dispatches, (event): Protocol.Dispatch => event.dispatch)
    const views = oldShards.map((oldShard) => ({ ...oldShard, events }))
    const consumer = yield* options.run(views[0]!, { events: keyed }).pipe(
      Effect.catchCause((cause) =>
        Effect.logError("the shard's consumer failed during a reshard wave", cause),
      ),
      Effect.forkScoped,
    )
    // Commands for s reach the wave's manager until s is retired.
    for (const view of views) {
      const name = nameOf([view.id, from])
      local.set(name, view)
      yield* Effect.addFinalizer(() => Effect.sync(() => local.get(name) === view && local.delete(name)))
    }

    /**
     * Closes the manager (its shards close resumable, their final sessions in memory) and waits
     * for the app to finish what they queued: false when it did not in time (then the final
     * sessions are not saved: the next owner replays from the earlier rows, never past an
     * event the app has not finished).
     */
    const closeAndDrain = Effect.gen(function* () {
      yield* Scope.close(managerScope, Exit.void)
      const finished = yield* Deferred.await(drained).pipe(
        Effect.timeoutOption(wave.drainTimeout ?? Duration.seconds(30)),
      )
      yield* Fiber.interrupt(consumer)
      if (Option.isSome(finished)) return true
      yield* Effect.logWarning(
        "the app did not finish the wave's events in time: they will be handed to it again",
      )
      return false
    })

    const lapsed = Effect.raceAll(all.map((o) => o.lapsed)).pipe(
      Effect.map((lapse) => `an ownership of the wave lapsed (${lapse._tag})`),
    )
    // s first streams (or is found dead: a 4011), so the handover begins only for a live s.
    let dead = false
    for (const oldShard of oldShards) {
      const oldState = yield* SubscriptionRef.changes(oldShard.status).pipe(
        Stream.map((status) => status.state._tag),
        Stream.filter((tag) => tag === "Ready" || tag === "Stopped"),
        Stream.runHead,
        Effect.timeoutOption(wave.reshard?.waveTimeout ?? Duration.minutes(2)),
        Effect.map(Option.flatten),
      )
      if (Option.isNone(oldState))
        return yield* Effect.fail(`shard ${oldShard.id}/${from} did not come up for its wave`)
      if (oldState.value === "Stopped") dead = true
    }
    if (dead) {
      // Dead: the new sessions carry its guilds from their READY on, with no other copy; once
      // each is stored the wave is handed (a runner killed later commits, never redoes it).
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          while (stored.size < joins.length) yield* Effect.sleep(Duration.millis(10))
          if (!valid()) return
          yield* handed
          isHanded = true
        }).pipe(
          Effect.catchCause((cause) => Effect.logError("the wave's hand-over mark was not written", cause)),
        ),
      )
    }

    // Forked: a stop of the singleton (SIGTERM, a rebalance) in the middle decides how it ends.
    const reshard = yield* Effect.forkScoped(
      Effect.raceFirst(
        manager.reshard(to).pipe(
          Effect.mapError((error) => error.message),
          Effect.exit,
        ),
        Effect.map(lapsed, (reason) => Exit.fail(reason)),
      ),
    )

    /** The app's last events done, the sessions saved so the next owner resumes after them. */
    const keepOld = Effect.gen(function* () {
      if (!(yield* closeAndDrain)) return
      for (const [id, ownership] of olds) {
        const kept = yield* memory.load([id, from])
        if (Option.isSome(kept) && ownership.valid()) yield* ownership.store.save([id, from], kept.value)
      }
    })
    const commitNew = Effect.gen(function* () {
      for (const x of joins) yield* manager.stop(x)
      const drainedInTime = yield* closeAndDrain
      // s live: its guilds become the new sessions' only once the app has finished all s
      // delivered, to the server's close frame. Otherwise s resumes as it was before the wave.
      const fromLive = !isHanded && !dead
      if (fromLive && !drainedInTime)
        return yield* Effect.fail("the app did not finish the wave's events in time")
      if (fromLive && (retiredSockets.length < retire.length || retiredSockets.some((r) => !r.ended)))
        return yield* Effect.fail("an old shard's stream ended before the server's close frame")
      for (const x of joins) {
        const session = yield* memory.load([x, to])
        if (Option.isNone(session)) return yield* Effect.fail(`shard ${x}/${to} has no session to hand on`)
        // Not drained: the rows stay at the sessions' READY (everything handed again, nothing lost).
        if (drainedInTime) yield* news.get(x)!.store.save([x, to], session.value)
      }
      if (!valid()) return yield* Effect.fail("an ownership of the wave lapsed before the commit")
      if (!isHanded) {
        yield* Effect.mapError(handed, () => "the wave's hand-over mark was not written")
        isHanded = true
      }
      // Nobody resumes s's session any more (left to expire at the gateway).
      for (const [id, ownership] of olds) yield* ownership.store.clear([id, from])
      if (!(yield* Effect.orElseSucceed(commit, () => false)))
        return yield* Effect.fail("the wave could not be marked done")
      return { tookMillis: clock.currentTimeMillisUnsafe() - started }
    })

    return yield* Fiber.join(reshard).pipe(
      Effect.flatMap((outcome) =>
        Exit.isSuccess(outcome)
          ? commitNew
          : // The manager rolled the wave back: s serves again; its session as the app finished it.
            Effect.andThen(
              keepOld,
              Effect.fail(Option.getOrElse(Exit.findErrorOption(outcome), () => "interrupted")),
            ),
      ),
      Effect.onInterrupt(() =>
        isHanded
          ? // Marked: s's guilds are only the new sessions' now: the wave goes forward.
            Fiber.await(reshard).pipe(
              Effect.andThen(commitNew),
              Effect.catchCause((cause) =>
                Effect.logWarning("the wave stopped after it was marked handed", cause),
              ),
            )
          : // Before it: the new shards log out, s's session is kept as the app finished it.
            Effect.andThen(Fiber.interrupt(reshard), keepOld),
      ),
    )
  }).pipe(Effect.scoped)
