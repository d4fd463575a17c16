/**
 * Errors an app user can do something about, in one line each, with a distinct exit code
 * per cause, so scripts and supervisors can tell them apart.
 */
import type { GatewayError, GatewayInfo, ShardManager } from "@vigil/gateway"
import type { ProviderError } from "@vigil/provider"
import { Schema } from "effect"

export type Explainable =
  | GatewayError.FatalGatewayError
  | GatewayError.SessionStartLimitExhausted
  | GatewayInfo.GatewayInfoError
  | ProviderError.BotUserUnavailable
  | ShardManager.ManagerStop
  | MissingToken
  | SessionDirUnavailable
  | MetricsPortUnavailable

export class MissingToken extends Schema.TaggedError<MissingToken>()("MissingToken", {}) {
  override get message() {
    return "no token: set DISCORD_TOKEN"
  }
}

/** `--session-dir` names a directory that cannot be created or used. */
export class SessionDirUnavailable extends Schema.TaggedError<SessionDirUnavailable>()(
  "SessionDirUnavailable",
  {
    directory: Schema.String,
    reason: Schema.String,
  },
) {
  override get message() {
    return `cannot keep sessions in ${this.directory}: ${this.reason}`
  }
}

/** `--metrics-port` cannot be listened on (in use, not permitted, no such address). */
export class MetricsPortUnavailable extends Schema.TaggedError<MetricsPortUnavailable>()(
  "MetricsPortUnavailable",
  {
    port: Schema.Number,
    reason: Schema.String,
  },
) {
  override get message() {
    return `cannot serve metrics on port ${this.port}: ${this.reason}`
  }
}

export const exitCodes = {
  ok: 0,
  invariant: 1,
  MissingToken: 10,
  AuthenticationFailed: 11,
  GatewayInfoError: 12,
  InvalidShard: 13,
  ShardingRequired: 14,
  InvalidApiVersion: 15,
  InvalidIntents: 16,
  DisallowedIntents: 17,
  SessionStartLimitExhausted: 18,
  CompressionUnavailable: 19,
  SessionDirUnavailable: 20,
  MetricsPortUnavailable: 21,
  BotUserUnavailable: 22,
} as const

export const explain = (error: Explainable): { readonly line: string; readonly code: number } => {
  switch (error._tag) {
    case "MissingToken":
      return { line: "no token: set the DISCORD_TOKEN environment variable.", code: exitCodes.MissingToken }
    case "AuthenticationFailed":
      return {
        // 401: refused by the REST API (GET /users/@me, /gateway/bot); 4004: by the gateway itself.
        line: `Discord refused the token (${error.code}). Check DISCORD_TOKEN, or reset the token in the developer portal.`,
        code: exitCodes.AuthenticationFailed,
      }
    case "GatewayInfoError":
      return {
        line: `could not ask Discord where to connect: ${error.message}`,
        code: exitCodes.GatewayInfoError,
      }
    case "BotUserUnavailable":
      return { line: error.message, code: exitCodes.BotUserUnavailable }
    case "InvalidShard":
      return {
        line: "Discord rejected the shard id or count (4010). Check --shards.",
        code: exitCodes.InvalidShard,
      }
    case "ShardingRequired":
      return {
        line: "the bot is in too many guilds for this shard count (4011). Use more --shards, or leave it out to take Discord's recommendation.",
        code: exitCodes.ShardingRequired,
      }
    case "InvalidApiVersion":
      return { line: "Discord rejected the gateway API version (4012).", code: exitCodes.InvalidApiVersion }
    case "InvalidIntents":
      return {
        line: "the intents value is not valid (4013). Check --intents.",
        code: exitCodes.InvalidIntents,
      }
    case "DisallowedIntents":
      return {
        line: "a privileged intent is not enabled for this bot (4014): enable it in the developer portal (Bot → Privileged Gateway Intents) or drop it from --intents.",
        code: exitCodes.DisallowedIntents,
      }
    case "CompressionUnavailable":
      return {
        line: `${error.compression} is not available here; use --compression none.`,
        code: exitCodes.CompressionUnavailable,
      }
    case "SessionStartLimitExhausted":
      return {
        line: `no identifies left today (session_start_limit); try again in ${Math.ceil(error.resetAfterMillis / 60_000)} min.`,
        code: exitCodes.SessionStartLimitExhausted,
      }
    case "SessionDirUnavailable":
      return { line: `${error.message}. Check --session-dir.`, code: exitCodes.SessionDirUnavailable }
    case "MetricsPortUnavailable":
      return {
        line: `${error.message}. Is another process (another vigil?) using it? Choose another --metrics-port.`,
        code: exitCodes.MetricsPortUnavailable,
      }
  }
}
