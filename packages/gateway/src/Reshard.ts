/**
 * Resharding without downtime: the plan (which shards of the new count replace which of the
 * old, in waves), its typed errors and status, and the periodic check of `/gateway/bot`.
 * `ShardManager.reshard` carries a plan out (`internal/Resharding.ts`); the per-guild handover
 * of events (each event once, in the guild's order, while both counts run) is
 * `internal/Handover.ts`.
 *
 * Waves, when the new count M is a multiple k of the old N: a guild on old shard s
 * (`(id >> 22) % N = s`) lands on one of the new shards s, s + N, …, s + (k − 1)N, and those hold
 * no other guild. So old shard s is replaced by exactly those k, then closed, one old shard
 * at a time: at most k connections beside the serving ones (M + 1 in all, in the last wave,
 * against N + M for the whole set). Any other M (3 → 5): a new
 * shard's guilds come from several old shards, so the whole new set runs beside the old one
 * (M extra connections) and the old set closes once every guild is handed over: the fallback.
 */
import { Duration, Effect, Schema } from "effect"

export interface Wave {
  /** Shards of the old count closed once the wave's guilds are handed over. */
  readonly retire: ReadonlyArray<number>
  /** Shards of the new count started for them. */
  readonly join: ReadonlyArray<number>
}

export interface Plan {
  readonly from: number
  readonly to: number
  readonly mode: "waves" | "whole-set"
  readonly waves: ReadonlyArray<Wave>
  /** The most connections open beside the serving shards at any moment (k in waves, M for the whole set). */
  readonly extraConnections: number
}

/**
 * The waves that take the shards `running` (of `from`) to `to`. Waves need `to` to be a
 * multiple of `from`; otherwise one wave retires every running shard and starts every new one.
 */
export const plan = (from: number, to: number, running: ReadonlyArray<number>): Plan => {
  if (to > from && to % from === 0) {
    const k = to / from
    return {
      from,
      to,
      mode: "waves",
      waves: running.map((s) => ({ retire: [s], join: Array.from({ length: k }, (_, j) => s + j * from) })),
      extraConnections: k,
    }
  }
  const join = Array.from({ length: to }, (_, i) => i)
  return { from, to, mode: "whole-set", waves: [{ retire: running, join }], extraConnections: to }
}

export interface ReshardOptions {
  /** Identifies to keep in the daily budget beyond the new shards. Default: the current count. */
  readonly safetyMargin?: number | undefined
  /**
   * A joined guild with nothing in between is handed over once this long passed since its new
   * shard's GUILD_CREATE and its old shard's last event for it (the old stream has caught
   * up). Default 1 s. It decides when the old shard closes, never which copy of an event is
   * delivered (a new stream still behind then is matched on, see `internal/Handover.ts`).
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

export type Trigger = "explicit" | "4011" | "periodic"

/** A reshard that was not started. */
export class ReshardRefused extends Schema.TaggedError<ReshardRefused>()("ReshardRefused", {
  reason: Schema.Literals(["budget", "in-progress", "same-count", "partial-set"]),
  detail: Schema.String,
}) {
  override get message() {
    return `reshard refused (${this.reason}): ${this.detail}`
  }
}

/** A reshard that failed and was rolled back: the old count serves every guild again. */
export class ReshardFailed extends Schema.TaggedError<ReshardFailed>()("ReshardFailed", {
  from: Schema.Int,
  to: Schema.Int,
  reason: Schema.String,
  /** False when even the rollback failed: shards of both counts serve (each guild by one). */
  rolledBack: Schema.Boolean,
}) {
  override get message() {
    return `reshard ${this.from} → ${this.to} failed (${this.reason}); ${
      this.rolledBack ? "rolled back" : "rollback incomplete: both counts serve"
    }`
  }
}

export type ReshardError = ReshardRefused | ReshardFailed

export type ReshardState =
  | { readonly _tag: "Idle" }
  | {
      readonly _tag: "Running"
      readonly from: number
      readonly to: number
      readonly trigger: Trigger
      readonly mode: Plan["mode"]
      readonly startedAt: number
      /** The wave under way (from 1) of `waves`. */
      readonly wave: number
      readonly waves: number
    }
  | {
      readonly _tag: "RollingBack"
      readonly from: number
      readonly to: number
      readonly trigger: Trigger
      readonly reason: string
      readonly startedAt: number
    }

export interface ReshardOutcome {
  readonly from: number
  readonly to: number
  readonly trigger: Trigger
  readonly outcome: "completed" | "refused" | "rolled-back"
  readonly reason: string | undefined
  readonly startedAt: number
  /** From the start to the last old shard closed (or the rollback done). */
  readonly tookMillis: number
}

export interface ReshardStatus {
  readonly state: ReshardState
  /** How the last reshard ended. */
  readonly last: ReshardOutcome | undefined
}

/**
 * Every `interval`, asks for the recommended count; when it is above the current one, reshards
 * to it. A failed check (or reshard) is logged and the next one comes an interval later.
 */
export const watchRecommendation = (options: {
  readonly interval: Duration.Input
  readonly recommended: Effect.Effect<number, unknown>
  readonly current: () => number
  readonly reshard: (count: number) => Effect.Effect<void, unknown>
}): Effect.Effect<never> =>
  Effect.gen(function* () {
    const interval = Duration.fromInputUnsafe(options.interval)
    while (true) {
      yield* Effect.sleep(interval)
      yield* options.recommended.pipe(
        Effect.flatMap((count) =>
          count > options.current()
            ? Effect.andThen(
                Effect.logInfo(
                  `/gateway/bot recommends ${count} shards (running ${options.current()}): resharding`,
                ),
                options.reshard(count),
              )
            : Effect.void,
        ),
        Effect.catchCause((cause) => Effect.logWarning("periodic shard count check failed", cause)),
      )
    }
  })
