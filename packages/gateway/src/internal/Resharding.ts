/**
 * A reshard carried out (see `Reshard.ts` for the plan, `Handover.ts` for the events): the
 * new generation's shards start wave by wave beside the serving ones, through the manager's
 * identify throttle; a wave ends when its guilds are handed over, and its old shards log out.
 * The budget is checked first (refused, typed); a failure midway rolls back (the wave's new
 * shards log out, completed waves are handed back to restarted old shards); an interruption
 * (the manager's scope closing) logs the new shards out and stops. One reshard at a time.
 */
import {
  Cause,
  type Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Metric,
  Option,
  type Scope,
  SubscriptionRef,
} from "effect"
import type { IdentifyThrottleService } from "../IdentifyThrottle.ts"
import * as Metrics from "../Metrics.ts"
import * as Reshard from "../Reshard.ts"
import type * as Shard from "../Shard.ts"
import type { ManagerStop } from "../ShardManager.ts"
import * as Handover from "./Handover.ts"
import type { Merged } from "./Merged.ts"

export interface Running {
  readonly shard: Shard.Shard
  readonly scope: Scope.Closeable
}

/** The shards of one count. */
export interface Generation {
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

export const generation = (
  count: number,
  onFatal: (id: number, error: ManagerStop) => Effect.Effect<void>,
): Generation => ({
  count,
  shards: new Map(),
  stopped: new Set(),
  onFatal,
  joining: new Map(),
  provisional: false,
})

export interface Deps {
  readonly fleet: {
    /** The serving generation. */
    readonly current: () => Generation
    /** The reshard's new generation, while one runs (or a failed rollback left it serving). */
    readonly next: () => Generation | undefined
    readonly setNext: (gen: Generation | undefined) => void
    /** The new generation serves from now on (`next` is cleared). */
    readonly commit: (gen: Generation) => void
  }
  readonly startIn: (gen: Generation, id: number) => Effect.Effect<void>
  /** `logout`: the session ends (1000); otherwise it stays resumable. */
  readonly closeIn: (gen: Generation, id: number, logout: boolean) => Effect.Effect<void>
  /** Where a serving shard's fatal stop goes (the manager's own handling). */
  readonly onServingFatal: (id: number, error: ManagerStop) => Effect.Effect<void>
  readonly merged: Merged
  readonly identifyThrottle: IdentifyThrottleService
  readonly clock: Clock.Clock
  readonly options: Reshard.ReshardOptions
}

export const make = (deps: Deps) => {
  const { fleet, startIn, closeIn, onServingFatal, merged, identifyThrottle, clock, options } = deps
  const quietMillis = options.quietMillis ?? 1000
  const waveTimeoutMillis = Duration.toMillis(options.waveTimeout ?? "2 minutes")
  const unavailableMillis = Duration.toMillis(options.unavailableAfter ?? "30 seconds")
  let reshardState: Reshard.ReshardState = { _tag: "Idle" }
  let lastOutcome: Reshard.ReshardOutcome | undefined

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
      if (live.length > 0) yield* merged.mark(() => handover.retire(live, wave.join))
    })

  /** Closes a wave's new shards before they took over; the old ones serve on. */
  const abortWave = (handover: Handover.Handover, to: Generation, wave: Reshard.Wave) =>
    Effect.gen(function* () {
      for (const id of wave.join) yield* closeIn(to, id, true)
      // Bounded: when the manager is shutting down, no consumer may be left to reach it.
      yield* bounded(
        merged.mark(() => {
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
        yield* finish(trigger, fleet.current().count, to, now, "refused", detail)
      }
      return yield* error
    })

  /** Taken synchronously by the reshard that runs: a second one (two 4011s at once) is refused. */
  let busy = false
  const reshard = (count: number, trigger: Reshard.Trigger): Effect.Effect<void, Reshard.ReshardError> =>
    Effect.suspend(() => {
      if (busy)
        return refuse(
          trigger,
          count,
          "in-progress",
          `a reshard to ${fleet.next()?.count ?? "?"} is under way`,
        )
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
      const current = fleet.current()
      const from = current.count
      const left = fleet.next()
      if (left !== undefined) {
        return yield* refuse(
          trigger,
          count,
          "in-progress",
          `a failed rollback left shards of ${from} and ${left.count} serving`,
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
      const margin = options.safetyMargin ?? from
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
      const nextGen = generation(count, (id, error) =>
        Deferred.fail(failed, `new shard ${id}/${count}: ${error.message}`),
      )
      nextGen.provisional = true
      fleet.setNext(nextGen)
      const handover = Handover.make(from, count, {
        now: () => clock.currentTimeMillisUnsafe(),
        window: options.window,
      })
      merged.handovers.unshift(handover)
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
                return runWave(handover, fleet.current(), nextGen, wave, failed).pipe(
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
        nextGen.onFatal = onServingFatal
        fleet.commit(nextGen)
        // The filter leaves the consumer once every guild's new stream passed the old one's end.
        handover.close()
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
      const current = fleet.current()
      const reverse = Handover.make(nextGen.count, from, {
        now: () => clock.currentTimeMillisUnsafe(),
        window: options.window,
      })
      // Completed waves' guilds go back: the reverse handover matches their new shards' events.
      forward.stopDraining()
      merged.handovers.unshift(reverse)
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
      // What the new shards delivered is matched against the old copies until each guild's old
      // stream passed their end (`Handover.abort`), the reversed waves' likewise; then both
      // filters leave the consumer. A marker: behind the aborts' markers, whenever they run.
      yield* bounded(
        merged.mark(() => {
          forward.release()
          reverse.release()
          return []
        }),
      )
      const rolledBack = Exit.isSuccess(back)
      if (rolledBack) {
        fleet.setNext(undefined)
      } else {
        // Both counts serve (each guild by one shard): their fatal stops are the manager's.
        nextGen.onFatal = onServingFatal
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
      fleet.setNext(undefined)
      merged.handovers.length = 0
      reshardState = { _tag: "Idle" }
      yield* finish(trigger, from, nextGen.count, startedAt, "rolled-back", "interrupted")
      return yield* Effect.interrupt
    })

  /** A marker the consumer may never reach (the manager shutting down): waited for a while only. */
  const bounded = (effect: Effect.Effect<void>) =>
    Effect.timeoutOrElse(effect, { duration: "2 seconds", orElse: () => Effect.void })

  return {
    reshard,
    status: Effect.sync((): Reshard.ReshardStatus => ({ state: reshardState, last: lastOutcome })),
    /** A reshard runs (taken synchronously when one starts). */
    busy: () => busy,
  }
}

export type Resharding = ReturnType<typeof make>
