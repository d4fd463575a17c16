/**
 * The provider's typed errors, each a `Schema.TaggedError` an app can `catchTag`. None
 * carries the token, a request, its headers or a raw response: only what went wrong, in
 * Vigil's words, and the numbers that matter (status, Discord's error code, waits).
 */
import type { GatewayError, GatewayInfo } from "@vigil/gateway"
import { Schema } from "effect"

const route = { method: Schema.String, route: Schema.String }

/** A REST call failed: a network error, a timeout, a 5xx after retries, or an unexpected answer. */
export class RestError extends Schema.TaggedError<RestError>()("RestError", {
  ...route,
  /** The HTTP status, when the server answered. */
  status: Schema.optional(Schema.Int),
  /** Discord's JSON error code, when the body had one. */
  code: Schema.optional(Schema.Int),
  detail: Schema.String,
  /** Attempts made, retries included. */
  attempts: Schema.Int,
}) {
  override get message() {
    const status =
      this.status !== undefined ? ` (${this.status}${this.code !== undefined ? `/${this.code}` : ""})` : ""
    return `${this.method} ${this.route} failed${status} after ${this.attempts} attempt(s): ${this.detail}`
  }
}

/** Still rate limited after the allowed retries, or asked to wait longer than allowed. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  ...route,
  /** How long Discord asked to wait, milliseconds. */
  retryAfterMillis: Schema.Number,
  /** The bot's global limit rather than the route's bucket. */
  global: Schema.Boolean,
  attempts: Schema.Int,
}) {
  override get message() {
    return `${this.method} ${this.route}: rate limited${this.global ? " (global)" : ""}, retry after ${this.retryAfterMillis} ms (gave up after ${this.attempts} attempt(s))`
  }
}

/** 401: the token was refused. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", route) {
  override get message() {
    return `${this.method} ${this.route}: 401, the bot token was refused`
  }
}

/** 403: the bot may not do this here (Missing Access 50001, Missing Permissions 50013, …). */
export class MissingPermissions extends Schema.TaggedError<MissingPermissions>()("MissingPermissions", {
  ...route,
  code: Schema.optional(Schema.Int),
  detail: Schema.String,
}) {
  override get message() {
    return `${this.method} ${this.route}: 403 ${this.detail}${this.code !== undefined ? ` (${this.code})` : ""}`
  }
}

/** 404: the channel (or message) does not exist, or the bot cannot see it. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  ...route,
  code: Schema.optional(Schema.Int),
  detail: Schema.String,
}) {
  override get message() {
    return `${this.method} ${this.route}: 404 ${this.detail}${this.code !== undefined ? ` (${this.code})` : ""}`
  }
}

/**
 * 400, or refused before sending: the request is not acceptable (an empty or too long
 * message, a route without its parameters, an invalid form body, …).
 */
export class InvalidMessage extends Schema.TaggedError<InvalidMessage>()("InvalidMessage", {
  ...route,
  code: Schema.optional(Schema.Int),
  detail: Schema.String,
}) {
  override get message() {
    return `${this.method} ${this.route}: invalid request: ${this.detail}${this.code !== undefined ? ` (${this.code})` : ""}`
  }
}

export type SendError =
  | RestError
  | RateLimited
  | Unauthorized
  | MissingPermissions
  | NotFound
  | InvalidMessage

/**
 * A MESSAGE_* dispatch that does not match its Schema. Reported in the inbound stream (the
 * stream goes on); `detail` says which field was wrong, never the payload.
 */
export class MalformedEvent extends Schema.TaggedError<MalformedEvent>()("MalformedEvent", {
  shardId: Schema.Int,
  type: Schema.String,
  seq: Schema.Int,
  detail: Schema.String,
}) {
  override get message() {
    return `shard ${this.shardId}: malformed ${this.type} (seq ${this.seq}): ${this.detail}`
  }
}

/** A lifecycle call after the provider's scope closed (the app is shutting down). */
export class ProviderClosed extends Schema.TaggedError<ProviderClosed>()("ProviderClosed", {
  operation: Schema.String,
}) {
  override get message() {
    return `the provider is shut down: ${this.operation} was not carried out`
  }
}

/** A gateway command while no shards run (before `start`, after `stop`). */
export class GatewayNotRunning extends Schema.TaggedError<GatewayNotRunning>()("GatewayNotRunning", {
  command: Schema.String,
}) {
  override get message() {
    return `${this.command}: the gateway is not running (start the provider first)`
  }
}

/**
 * `GET /users/@me` failed when a start or reload asked who the bot is (unreachable, 5xx or
 * 429 after the REST client's retries, or an unexpected answer); `reason` is the REST error's message.
 */
export class BotUserUnavailable extends Schema.TaggedError<BotUserUnavailable>()("BotUserUnavailable", {
  reason: Schema.String,
}) {
  override get message() {
    return `could not ask Discord who the bot is: ${this.reason}`
  }
}

/**
 * Why a start or reload failed: `GET /gateway/bot` or `GET /users/@me` did, or refused
 * the token (401).
 */
export type StartError = GatewayInfo.GatewayInfoError | GatewayError.AuthenticationFailed | BotUserUnavailable
