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
  /** Connections in a row that ended without reaching READY or RESUMED (0: this one did). */
  readonly failuresSinceReady: number
}

export interface PolicyConfig {
  /** Failed resumes in a row before giving the session up and identifying. Default 3. */
  readonly maxResumeAttempts: number
  /** Backoff: first delay, factor 2 per further failure, capped. Milliseconds. */
  readonly backoffBaseMillis: number
  readonly backoffMaxMillis: number
}

export const defaultConfig: PolicyConfig = {
  maxResumeAttempts: 3,
  backoffBaseMillis: 1_000,
  backoffMaxMillis: 60_000,
}

/** How long to wait before the next attempt. */
export type Wait =
  | { readonly _tag: "None" }
  /** Exponential backoff (with jitter) for the n-th failure in a row. */
  | { readonly _tag: "Backoff"; readonly failures: number }
  /** Invalid Session (not resumable): Discord asks for a random 1–5 s. */
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

/** Reconnect at once after a healthy connection ends; back off while attempts keep failing. */
const waitAfter = (failuresSinceReady: number): Wait =>
  failuresSinceReady === 0 ? { _tag: "None" } : { _tag: "Backoff", failures: failuresSinceReady }

export const decide = (input: PolicyInput, config: PolicyConfig = defaultConfig): Decision => {
  const { error } = input
  if (isFatal(error)) return { _tag: "Stop", error }
  const wait = waitAfter(input.failuresSinceReady)
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

/** Close codes after which the session is gone: what the shard must forget. */
export const clearsSession = (decision: Decision): boolean => decision._tag !== "Resume"
