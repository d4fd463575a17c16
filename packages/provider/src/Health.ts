/**
 * The provider's health as plain data: one `ProviderHealth` snapshot says what the provider
 * is doing, how each shard is (state, latency, last event, reconnects, resumes, errors by
 * tag) and what went in and out. Suitable as is for a `status` command or a JSON health
 * endpoint; `verdict` boils it down to up / degraded / down.
 */
import type { Shard } from "@vigil/gateway"

/**
 * - `Stopped`: not connected (before `start`, after `stop`, or after a failed start);
 * - `Starting`, `Stopping`, `Reloading`: a lifecycle operation is under way;
 * - `Running`: a generation of shards is running (they may be reconnecting: see `shards`);
 * - `Closed`: the provider's scope closed; nothing will run again.
 */
export type ProviderState = "Stopped" | "Starting" | "Running" | "Stopping" | "Reloading" | "Closed"

export interface ErrorSummary {
  readonly tag: string
  readonly message: string
  /** The gateway URL a connection had tried, when the error ended one. */
  readonly url?: string | undefined
}

export interface ShardReport {
  readonly shardId: number
  readonly shardCount: number
  /** `Ready`, `Connecting`, `Identifying`, `Resuming`, `BackingOff` or `Stopped`, with details. */
  readonly state: Shard.ShardState
  /** Last heartbeat round trip, milliseconds. */
  readonly latencyMillis: number | undefined
  /** When the last dispatch was handed over (epoch millis, `Clock` time). */
  readonly lastEventAt: number | undefined
  readonly sessionId: string | undefined
  /** Connections opened, and those after the first. */
  readonly connections: number
  readonly reconnects: number
  readonly identifies: number
  readonly resumes: number
  readonly lastError: ErrorSummary | undefined
  /** How each connection of this generation ended, counted by error tag. */
  readonly errors: Readonly<Record<string, number>>
  /** Dispatches handed over, replays dropped as duplicates, events dropped by a lossy buffer. */
  readonly delivered: number
  readonly duplicates: number
  readonly dropped: number
  readonly queuedCommands: number
}

export interface InboundCounters {
  /** Message events handed on (decoded, and counted here, while `messages` or `inbound` has a consumer). */
  readonly messages: number
  /** MESSAGE_* dispatches that did not decode (reported as `MalformedEvent`). */
  readonly malformed: number
  /** The bot's own messages, skipped. */
  readonly ownSkipped: number
}

export interface OutboundCounters {
  readonly sent: number
  /** Failed sends by error tag (`RateLimited`, `MissingPermissions`, …). */
  readonly failed: Readonly<Record<string, number>>
  /** HTTP requests made, 429s received, retries made (rate limits and transient failures). */
  readonly requests: number
  readonly rateLimited: number
  readonly retries: number
}

export interface ProviderHealth {
  /** When the snapshot was taken (epoch millis, `Clock` time). */
  readonly at: number
  readonly state: ProviderState
  /** Counts starts and reloads: each running set of shards is one generation. */
  readonly generation: number
  /** Running, and every shard is `Ready`. */
  readonly ready: boolean
  /** The bot's user, from READY. */
  readonly botUser: { readonly id: string; readonly username: string } | undefined
  /** The fatal error a shard stopped with (bad token, disallowed intents, …), if any. */
  readonly fatal: ErrorSummary | undefined
  /** Why the last start or reload failed, if it did. */
  readonly startError: ErrorSummary | undefined
  readonly shards: ReadonlyArray<ShardReport>
  readonly inbound: InboundCounters
  readonly outbound: OutboundCounters
}

export type Verdict = "up" | "degraded" | "down"

/** `up`: ready. `degraded`: running, but a shard is not ready (reconnecting). `down`: otherwise. */
export const verdict = (health: ProviderHealth): Verdict =>
  health.ready
    ? "up"
    : health.state === "Running" && health.fatal === undefined
      ? "degraded"
      : health.state === "Reloading" || health.state === "Starting"
        ? "degraded"
        : "down"

export const shardReport = (
  health: Shard.ShardHealth,
  errors: Readonly<Record<string, number>>,
): ShardReport => ({
  shardId: health.shard[0],
  shardCount: health.shard[1],
  state: health.state,
  latencyMillis: health.latency,
  lastEventAt: health.lastEventAt,
  sessionId: health.sessionId,
  connections: health.connections,
  reconnects: Math.max(0, health.connections - 1),
  identifies: health.identifies,
  resumes: health.resumes,
  lastError: health.lastError,
  errors,
  delivered: health.delivered,
  duplicates: health.duplicates,
  dropped: health.dropped,
  queuedCommands: health.queuedCommands,
})
