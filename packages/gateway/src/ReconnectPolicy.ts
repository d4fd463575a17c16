/**
 * What a shard does after a connection ends: one pure function from (how it ended, the
 * session's state) to the next step. Everything about resume vs identify vs stop lives
 * here, table-tested, so the shard's loop only carries the decision out.
 */
import type { ConnectionError, FatalGatewayError } from "./GatewayError.ts"

export interface PolicyInput {
  /** How the connection ended. */
  readonly error: ConnectionError
  /** Whether there is a session to resume. */
  readonly hasSession: boolean
  /** The ended connection was a Resume attempt that never got RESUMED. */
  readonly wasFailedResume: boolean
  /** Failed resumes in a row, including this one when `wasFailedResume`. */
  readonly resumeFailures: number
  /** Connections in a row that ended before proving healthy (0: this one proved it). */
  readonly failuresSinceHealthy: number
  /** Time from the ended connection's attempt start to now: the floor counts from there. */
  readonly sinceAttemptMillis: number
}

export interface PolicyConfig {
  /** Failed resumes in a row before giving the session up and identifying. Default 3. */
  readonly maxResumeAttempts: number
  /** Backoff: first delay, factor 2 per further failure, capped. Milliseconds. */
  readonly backoffBaseMillis: number
  readonly backoffMaxMillis: number
  /**
   * A connection proves healthy once READY/RESUMED came *and* then a heartbeat was ACKed or
   * it stayed up this long; only then does the backoff reset. Default 5 s: longer than any
   * "close right after the handshake" trick, shorter than the first heartbeat usually is.
   */
  readonly healthyAfterMillis: number
}

export const defaultConfig: PolicyConfig = {
  maxResumeAttempts: 3,
  backoffBaseMillis: 1_000,
  backoffMaxMillis: 60_000,
  healthyAfterMillis: 5_000,
}

/**
 * Connection attempts start at least this far apart, whatever the server does and
 * whatever the configuration says: no shard sustains more than one attempt per second.
 */
export const attemptFloorMillis = 1_000

/** What the shard saw of a connection that reached READY/RESUMED. */
export interface Uptime {
  /** Clock millis of READY/RESUMED; undefined if the handshake never completed. */
  readonly readyAt: number | undefined
  /** A heartbeat was ACKed after READY/RESUMED. */
  readonly ackedAfterReady: boolean
  /** Clock millis when the connection ended. */
  readonly endedAt: number
}

/** Whether a connection proved healthy: the handshake completed and the link then worked. */
export const provedHealthy = (uptime: Uptime, config: PolicyConfig = defaultConfig): boolean =>
  uptime.readyAt !== undefined &&
  (uptime.ackedAfterReady || uptime.endedAt - uptime.readyAt >= config.healthyAfterMillis)

/** How long to wait before the next attempt. */
export type Wait =
  | { readonly _tag: "None" }
  /** Only what is left of the floor since the last attempt started. */
  | { readonly _tag: "Floor"; readonly millis: number }
  /** Exponential backoff (with jitter) for the n-th failure in a row, never under `floorMillis`. */
  | { readonly _tag: "Backoff"; readonly failures: number; readonly floorMillis: number }
  /** Invalid Session (not resumable): Discord asks for a random 1–5 s (above the floor). */
  | { readonly _tag: "InvalidSession" }

export type Decision =
  | { readonly _tag: "Resume"; readonly wait: Wait; readonly reason: string }
  | { readonly _tag: "Identify"; readonly wait: Wait; readonly reason: string }
  | { readonly _tag: "Stop"; readonly error: FatalGatewayError }

const isFatal = (error: ConnectionError): error is FatalGatewayError =>
  error._tag === "CompressionUnavailable" ||
  error._tag === "AuthenticationFailed" ||
  error._tag === "InvalidShard" ||
  error._tag === "ShardingRequired" ||
  error._tag === "InvalidApiVersion" ||
  error._tag === "InvalidIntents" ||
  error._tag === "DisallowedIntents"

/**
 * Reconnect at once after a healthy connection ends (but never within the floor of the last
 * attempt's start); back off while attempts keep failing.
 */
const waitAfter = (input: PolicyInput): Wait => {
  const floorMillis = Math.max(0, attemptFloorMillis - input.sinceAttemptMillis)
  if (input.failuresSinceHealthy > 0) {
    return { _tag: "Backoff", failures: input.failuresSinceHealthy, floorMillis }
  }
  return floorMillis > 0 ? { _tag: "Floor", millis: floorMillis } : { _tag: "None" }
}

export const decide = (input: PolicyInput, config: PolicyConfig = defaultConfig): Decision => {
  const { error } = input
  if (isFatal(error)) return { _tag: "Stop", error }
  const wait = waitAfter(input)
  const identify = (reason: string, w: Wait = wait): Decision => ({ _tag: "Identify", wait: w, reason })
  const resume = (reason: string): Decision =>
    !input.hasSession
      ? identify(`${reason}; no session to resume`)
      : input.wasFailedResume && input.resumeFailures >= config.maxResumeAttempts
        ? identify(`${reason}; ${input.resumeFailures} resumes failed in a row`)
        : { _tag: "Resume", wait, reason }

  switch (error._tag) {
    case "ZombieDetected":
      return resume("zombie connection")
    case "ReconnectRequested":
      return resume("server requested reconnect")
    case "InvalidSession":
      return error.resumable
        ? resume("invalid session (resumable)")
        : identify("invalid session", { _tag: "InvalidSession" })
    case "ServerClosed":
      return error.action === "identify"
        ? identify(`closed with ${error.code}`)
        : resume(`closed with ${error.code}`)
    case "HelloTimeout":
      return resume("no Hello")
    case "HandshakeTimeout":
      return resume(`no ${error.handshake === "identify" ? "READY" : "RESUMED"}`)
    case "DecodeError":
      return resume(`undecodable frame (${error.stage})`)
    case "TransportError":
      return resume(`transport ${error.stage} failed`)
  }
}

/**
 * The backoff delay for the n-th failure in a row (n ≥ 1): base·2^(n-1), capped, with
 * "equal jitter" (half fixed, half random) so a fleet of shards does not reconnect in step.
 */
export const backoffMillis = (
  failures: number,
  random01: number,
  config: PolicyConfig = defaultConfig,
): number => {
  const exponential = Math.min(
    config.backoffMaxMillis,
    config.backoffBaseMillis * 2 ** Math.max(0, failures - 1),
  )
  return Math.round(exponential / 2 + (exponential / 2) * random01)
}

/** Invalid Session (not resumable): wait uniformly 1–5 s before identifying. */
export const invalidSessionMillis = (random01: number): number => Math.round(1_000 + 4_000 * random01)

/** The milliseconds a wait lasts, given one uniform random number in [0, 1). */
export const waitMillis = (wait: Wait, random01: number, config: PolicyConfig = defaultConfig): number => {
  switch (wait._tag) {
    case "None":
      return 0
    case "Floor":
      return wait.millis
    case "Backoff":
      return Math.max(wait.floorMillis, backoffMillis(wait.failures, random01, config))
    case "InvalidSession":
      return invalidSessionMillis(random01)
  }
}
