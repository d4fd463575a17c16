/**
 * Every way a connection or a shard can end, as tagged errors an app can `catchTag`.
 * None of them carries a raw frame or the token: a frame could echo the token back.
 */
import { type Redacted, Schema } from "effect"
import { classifyClose, describeClose, FatalCloseCodes } from "./Protocol.ts"
import * as ServerText from "./ServerText.ts"

const ShardId = Schema.Tuple([Schema.Int, Schema.Int])

/** No Heartbeat ACK arrived between one heartbeat and the next: the link is dead. */
export class ZombieDetected extends Schema.TaggedError<ZombieDetected>()("ZombieDetected", {
  shard: ShardId,
  intervalMillis: Schema.Number,
  /** Epoch millis of the last ACK on this connection, null if none ever came. */
  lastAckAt: Schema.NullOr(Schema.Number),
  /** How long the unanswered heartbeat waited for its ACK. */
  waitedMillis: Schema.Number,
}) {
  override get message() {
    return `shard ${this.shard[0]}/${this.shard[1]}: no heartbeat ACK within ${this.waitedMillis} ms (interval ${this.intervalMillis} ms)`
  }
}

/** The server did not send Hello in time after the socket opened. */
export class HelloTimeout extends Schema.TaggedError<HelloTimeout>()("HelloTimeout", {
  timeoutMillis: Schema.Number,
}) {
  override get message() {
    return `no Hello within ${this.timeoutMillis} ms`
  }
}

/** READY or RESUMED did not arrive in time after Identify or Resume. */
export class HandshakeTimeout extends Schema.TaggedError<HandshakeTimeout>()("HandshakeTimeout", {
  handshake: Schema.Literals(["identify", "resume"]),
  timeoutMillis: Schema.Number,
}) {
  override get message() {
    return `no ${this.handshake === "identify" ? "READY" : "RESUMED"} within ${this.timeoutMillis} ms`
  }
}

/**
 * The server closed the connection with a code that is not fatal. `reason` is the server's
 * text, sanitized (`ServerText`): built with `fromCode`, and sanitized again in `message`.
 */
export class ServerClosed extends Schema.TaggedError<ServerClosed>()("ServerClosed", {
  code: Schema.Int,
  reason: Schema.String,
  action: Schema.Literals(["resume", "identify", "fatal"]),
}) {
  /** `secret`: the token the connection sent, redacted from the reason if echoed. */
  static fromCode(code: number, reason: string, secret?: Redacted.Redacted<string>): ServerClosed {
    return new ServerClosed({
      code,
      reason: ServerText.sanitize(reason, secret),
      action: classifyClose(code),
    })
  }
  override get message() {
    const reason = ServerText.sanitize(this.reason)
    return `server closed with ${this.code} (${describeClose(this.code)}${reason ? `: ${reason}` : ""})`
  }
}

/** The server sent op 7: reconnect and resume. */
export class ReconnectRequested extends Schema.TaggedError<ReconnectRequested>()("ReconnectRequested", {}) {
  override get message() {
    return "server requested a reconnect (op 7)"
  }
}

/** The server sent op 9. `resumable` is its `d`. */
export class InvalidSession extends Schema.TaggedError<InvalidSession>()("InvalidSession", {
  resumable: Schema.Boolean,
}) {
  override get message() {
    return `invalid session (${this.resumable ? "resumable" : "not resumable"})`
  }
}

/** A frame could not be decompressed, parsed or read as a gateway payload. */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  stage: Schema.Literals(["decompress", "json", "envelope", "payload", "size"]),
  /** What was wrong, in Vigil's words: never the frame's content. */
  detail: Schema.String,
  bytes: Schema.Number,
}) {
  override get message() {
    return `cannot decode a ${this.bytes}-byte frame (${this.stage}): ${this.detail}`
  }
}

/**
 * The socket could not be opened, read or written (network, TLS, abrupt drop). `detail` can
 * quote server text (a host name from `resume_gateway_url` in a DNS error): sanitized in `message`.
 */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  stage: Schema.Literals(["open", "read", "write"]),
  detail: Schema.String,
  /** Close code when the socket closed without a reason from the protocol (1005/1006). */
  code: Schema.optional(Schema.Int),
}) {
  override get message() {
    const code = this.code !== undefined ? ` (${this.code})` : ""
    return `transport ${this.stage} failed: ${ServerText.sanitize(this.detail)}${code}`
  }
}

/** A command was refused before sending: it would break a protocol limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  bytes: Schema.Number,
  limit: Schema.Number,
}) {
  override get message() {
    return `payload of ${this.bytes} bytes exceeds the gateway's ${this.limit}-byte limit`
  }
}

/** Transport compression was asked for, but this runtime provides no codec for it. */
export class CompressionUnavailable extends Schema.TaggedError<CompressionUnavailable>()(
  "CompressionUnavailable",
  { compression: Schema.String },
) {
  override get message() {
    return `${this.compression} is not available in this runtime (provide @vigil/gateway-node's layer)`
  }
}

// ---------------------------------------------------------------------------
// Fatal: the server refused the bot itself. Retrying cannot help.

const fatalFields = { code: Schema.Int, reason: Schema.String }

export class AuthenticationFailed extends Schema.TaggedError<AuthenticationFailed>()(
  "AuthenticationFailed",
  fatalFields,
) {
  override get message() {
    return `authentication failed (${this.code}): the token was refused`
  }
}
export class InvalidShard extends Schema.TaggedError<InvalidShard>()("InvalidShard", fatalFields) {
  override get message() {
    return "invalid shard (4010): the shard id or count is wrong"
  }
}
export class ShardingRequired extends Schema.TaggedError<ShardingRequired>()(
  "ShardingRequired",
  fatalFields,
) {
  override get message() {
    return "sharding required (4011): too many guilds for this shard count"
  }
}
export class InvalidApiVersion extends Schema.TaggedError<InvalidApiVersion>()(
  "InvalidApiVersion",
  fatalFields,
) {
  override get message() {
    return "invalid API version (4012)"
  }
}
export class InvalidIntents extends Schema.TaggedError<InvalidIntents>()("InvalidIntents", fatalFields) {
  override get message() {
    return "invalid intents (4013): the intents value is not valid"
  }
}
export class DisallowedIntents extends Schema.TaggedError<DisallowedIntents>()(
  "DisallowedIntents",
  fatalFields,
) {
  override get message() {
    return "disallowed intents (4014): a privileged intent is not enabled for this bot"
  }
}

export type FatalGatewayError =
  | CompressionUnavailable
  | AuthenticationFailed
  | InvalidShard
  | ShardingRequired
  | InvalidApiVersion
  | InvalidIntents
  | DisallowedIntents

/** The fatal error a close code stands for, if it is one; its reason sanitized as `ServerClosed`'s. */
export const fatalFromClose = (
  code: number,
  reason: string,
  secret?: Redacted.Redacted<string>,
): FatalGatewayError | undefined => {
  const fields = { code, reason: ServerText.sanitize(reason, secret) }
  switch (code) {
    case FatalCloseCodes.AuthenticationFailed:
      return new AuthenticationFailed(fields)
    case FatalCloseCodes.InvalidShard:
      return new InvalidShard(fields)
    case FatalCloseCodes.ShardingRequired:
      return new ShardingRequired(fields)
    case FatalCloseCodes.InvalidApiVersion:
      return new InvalidApiVersion(fields)
    case FatalCloseCodes.InvalidIntents:
      return new InvalidIntents(fields)
    case FatalCloseCodes.DisallowedIntents:
      return new DisallowedIntents(fields)
    default:
      return undefined
  }
}

/** How one connection can end. Fatal errors mean the shard must stop. */
export type ConnectionError =
  | ZombieDetected
  | HelloTimeout
  | HandshakeTimeout
  | ServerClosed
  | ReconnectRequested
  | InvalidSession
  | DecodeError
  | TransportError
  | FatalGatewayError

/** The bot's daily identify budget (`session_start_limit`) is spent. */
export class SessionStartLimitExhausted extends Schema.TaggedError<SessionStartLimitExhausted>()(
  "SessionStartLimitExhausted",
  { resetAfterMillis: Schema.Number },
) {
  override get message() {
    return `no identifies left today (session_start_limit); resets in ${Math.ceil(this.resetAfterMillis / 1000)} s`
  }
}

/** The shard has stopped for good (logout, fatal error, shutdown): it sends nothing more. */
export class ShardStopped extends Schema.TaggedError<ShardStopped>()("ShardStopped", {
  shard: ShardId,
  /** Why it stopped: "logged out", "shut down", or the tag of the error it stopped with. */
  reason: Schema.String,
}) {
  override get message() {
    return `shard ${this.shard[0]}/${this.shard[1]} is stopped (${this.reason})`
  }
}

/**
 * The session store could not read, decode or write a session (a corrupt or foreign value, a
 * file system error). Logged, never raised: a miss costs an identify, not the shard.
 */
export class SessionStoreError extends Schema.TaggedError<SessionStoreError>()("SessionStoreError", {
  operation: Schema.Literals(["load", "save", "clear"]),
  shard: ShardId,
  reason: Schema.String,
}) {
  override get message() {
    return `session store: ${this.operation} for shard ${this.shard[0]}/${this.shard[1]} failed: ${this.reason}`
  }
}

/** The session store did not answer in time; the shard carried on without it. */
export class SessionStoreTimeout extends Schema.TaggedError<SessionStoreTimeout>()("SessionStoreTimeout", {
  operation: Schema.Literals(["load", "save", "clear"]),
  shardId: Schema.Int,
  timeoutMillis: Schema.Number,
}) {
  override get message() {
    return `session store: ${this.operation} for shard ${this.shardId} took longer than ${this.timeoutMillis} ms`
  }
}

/**
 * The server did something no sane gateway does, and the connection protected itself and
 * went on (reported as a `Warning` event): heartbeat requests (op 1) in a flood, or a
 * heartbeat interval too short to honour.
 */
export class ServerMisbehaviour extends Schema.TaggedError<ServerMisbehaviour>()("ServerMisbehaviour", {
  kind: Schema.Literals(["heartbeat-requests", "heartbeat-interval"]),
  /** What was wrong and what the connection did instead, in Vigil's words. */
  detail: Schema.String,
}) {
  override get message() {
    return `server misbehaviour (${this.kind}): ${this.detail}`
  }
}
