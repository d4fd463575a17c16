/**
 * Every Identify — the first one and each re-identify after a lost session — waits its
 * turn here: at most one per `windowMillis` (5 s) in each bucket `shard_id % max_concurrency`,
 * turns granted first come, first served, each `marginMillis` (250 ms) more than the window
 * apart: Discord counts the window from when an identify arrives, and a later identify whose
 * trip is quicker than the one before would otherwise arrive inside it. It also keeps the
 * daily `session_start_limit`:
 * when no identify is left, it either fails typed or waits for the reset, by configuration.
 */
import { Clock, Context, Duration, Effect, Layer, Metric, Semaphore } from "effect"
import { SessionStartLimitExhausted } from "./GatewayError.ts"
import * as Metrics from "./Metrics.ts"

export interface SessionStartLimit {
  readonly total: number
  readonly remaining: number
  readonly resetAfterMillis: number
}

export interface IdentifyThrottleOptions {
  readonly maxConcurrency: number
  /** Default 5000 ms, Discord's identify window. */
  readonly windowMillis?: number | undefined
  /**
   * Added to the window between two turns of a bucket: room for the second identify's trip to
   * be that much quicker than the first's (the gateway counts from arrival). Default 250 ms.
   */
  readonly marginMillis?: number | undefined
  /** From `GET /gateway/bot`; without it, no daily budget is kept. */
  readonly sessionStartLimit?: SessionStartLimit | undefined
  /** What to do when the budget is spent: fail (default) or wait for the reset. */
  readonly onExhausted?: "fail" | "wait" | undefined
}

export interface IdentifyThrottleService {
  /** Returns when `shardId` may send Identify now (the turn is taken). */
  readonly wait: (shardId: number) => Effect.Effect<void, SessionStartLimitExhausted>
  /** Identifies left in the daily budget (Infinity when none is kept). */
  readonly remaining: Effect.Effect<number>
}

const day = 24 * 60 * 60 * 1000

/** The default `marginMillis`: latency jitter a second identify may gain on the first. */
export const defaultMarginMillis = 250

export const make = Effect.fnUntraced(function* (options: IdentifyThrottleOptions) {
  const maxConcurrency = Math.max(1, options.maxConcurrency)
  const spacingMillis =
    (options.windowMillis ?? 5_000) + Math.max(0, options.marginMillis ?? defaultMarginMillis)
  const buckets = Array.from({ length: maxConcurrency }, () => ({
    lock: Semaphore.makeUnsafe(1),
    nextAt: Number.NEGATIVE_INFINITY,
  }))
  const limit = options.sessionStartLimit
  let remaining = limit ? limit.remaining : Number.POSITIVE_INFINITY
  let resetAt = (yield* Clock.currentTimeMillis) + (limit?.resetAfterMillis ?? 0)
  // Without a budget there is nothing to report (Infinity is no gauge value).
  const reportRemaining = Effect.suspend(() =>
    limit ? Metric.update(Metrics.sessionStartRemaining, remaining) : Effect.void,
  )
  yield* reportRemaining

  const takeBudget: Effect.Effect<void, SessionStartLimitExhausted> = Effect.gen(function* () {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      if (limit && now >= resetAt && remaining <= 0) {
        remaining = limit.total
        resetAt = now + day
      }
      if (remaining > 0) {
        remaining--
        return yield* reportRemaining
      }
      if (options.onExhausted !== "wait") {
        return yield* new SessionStartLimitExhausted({ resetAfterMillis: resetAt - now })
      }
      yield* Effect.logWarning(`identify budget spent; waiting ${resetAt - now} ms for its reset`)
      yield* Effect.sleep(resetAt - now)
    }
  })

  const wait = (shardId: number) => {
    const bucket = buckets[shardId % maxConcurrency]!
    return Semaphore.withPermits(
      bucket.lock,
      1,
    )(
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        if (now < bucket.nextAt) yield* Effect.sleep(bucket.nextAt - now)
        yield* takeBudget
        bucket.nextAt = (yield* Clock.currentTimeMillis) + spacingMillis
      }),
    ).pipe(
      // From asking to the turn: the bucket's queue and window, and any wait for the budget.
      Effect.timed,
      Effect.flatMap(([took]) => Metric.update(Metrics.identifyWait, Duration.toSeconds(took))),
    )
  }

  return IdentifyThrottle.of({ wait, remaining: Effect.sync(() => remaining) })
})

export class IdentifyThrottle extends Context.Service<IdentifyThrottle, IdentifyThrottleService>()(
  "@vigil/gateway/IdentifyThrottle",
) {
  static readonly layer = (options: IdentifyThrottleOptions): Layer.Layer<IdentifyThrottle> =>
    Layer.effect(IdentifyThrottle)(make(options))
}
