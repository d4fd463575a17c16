/**
 * The gateway protocol as Vigil speaks it (API v10): opcodes, close codes and what they
 * mean, the Schemas validated at the boundary, and builders for what the client sends.
 */
import type { GatewayDispatchPayload, GatewayPresenceUpdateData } from "discord-api-types/v10"
import { Predicate, Redacted, Schema } from "effect"
import * as Intents from "./Intents.ts"

export const ApiVersion = 10

export const Op = {
  Dispatch: 0,
  Heartbeat: 1,
  Identify: 2,
  PresenceUpdate: 3,
  VoiceStateUpdate: 4,
  Resume: 6,
  Reconnect: 7,
  RequestGuildMembers: 8,
  InvalidSession: 9,
  Hello: 10,
  HeartbeatAck: 11,
  RequestSoundboardSounds: 31,
} as const
export type Op = (typeof Op)[keyof typeof Op]

/** The opcodes a client receives; anything else from the server is a protocol error. */
export const receivableOps: ReadonlySet<number> = new Set([
  Op.Dispatch,
  Op.Heartbeat,
  Op.Reconnect,
  Op.InvalidSession,
  Op.Hello,
  Op.HeartbeatAck,
])

/** A sent payload larger than this makes the server close with 4002. */
export const maxPayloadBytes = 4096

/** Commands per connection per window; over it the server closes with 4008. */
export const sendLimit = { commands: 120, windowMillis: 60_000 } as const

// ---------------------------------------------------------------------------
// Close codes

/** What a close code asks of the client: resume the session, start a new one, or stop. */
export type CloseAction = "resume" | "identify" | "fatal"

export const FatalCloseCodes = {
  AuthenticationFailed: 4004,
  InvalidShard: 4010,
  ShardingRequired: 4011,
  InvalidApiVersion: 4012,
  InvalidIntents: 4013,
  DisallowedIntents: 4014,
} as const

const closeTable: Readonly<Record<number, { readonly action: CloseAction; readonly meaning: string }>> = {
  1000: { action: "identify", meaning: "normal closure: the session ended" },
  1001: { action: "identify", meaning: "going away: the session ended" },
  4000: { action: "resume", meaning: "unknown error" },
  4001: { action: "resume", meaning: "unknown opcode" },
  4002: { action: "resume", meaning: "decode error" },
  4003: { action: "identify", meaning: "not authenticated" },
  4004: { action: "fatal", meaning: "authentication failed" },
  4005: { action: "identify", meaning: "already authenticated" },
  4007: { action: "identify", meaning: "invalid sequence on resume" },
  4008: { action: "identify", meaning: "rate limited" },
  4009: { action: "identify", meaning: "session timed out" },
  4010: { action: "fatal", meaning: "invalid shard" },
  4011: { action: "fatal", meaning: "sharding required" },
  4012: { action: "fatal", meaning: "invalid API version" },
  4013: { action: "fatal", meaning: "invalid intents" },
  4014: { action: "fatal", meaning: "disallowed intents" },
}

/** Classifies a close code received from the server (the table in docs/protocol.md). */
export const classifyClose = (code: number): CloseAction => closeTable[code]?.action ?? "resume"

export const describeClose = (code: number): string => closeTable[code]?.meaning ?? "unclassified close"

/** The code Vigil closes with to end a connection but keep the session resumable. */
export const ResumableCloseCode = 4900

/** Closing with these ends the session on Discord's side (the bot shows offline). */
export const isSessionEndingCode = (code: number): boolean => code === 1000 || code === 1001

// ---------------------------------------------------------------------------
// Inbound payloads

/** The envelope every gateway message arrives in. `s` and `t` are null unless `op` is 0. */
export interface Envelope {
  readonly op: number
  readonly d: unknown
  readonly s: number | null
  readonly t: string | null
}

export const Envelope = Schema.Struct({
  op: Schema.Int,
  d: Schema.Unknown,
  s: Schema.optional(Schema.NullOr(Schema.Int)),
  t: Schema.optional(Schema.NullOr(Schema.String)),
})

/**
 * Reads an envelope from already-parsed JSON: the envelope, or what is wrong with it. This
 * is the hot path (every event passes here), so it checks the four fields by hand instead
 * of running a Schema, and hands back the parsed object itself when it is well formed; the
 * tests hold it to agreement with `Envelope`.
 */
export const readEnvelope = (value: unknown): Envelope | string => {
  if (!Predicate.isObject(value) || Array.isArray(value)) return "payload is not an object"
  const payload = value as { op?: unknown; d?: unknown; s?: unknown; t?: unknown }
  const { op } = payload
  if (typeof op !== "number" || !Number.isInteger(op)) return "missing or non-integer `op`"
  const seq = payload.s ?? null
  const name = payload.t ?? null
  if (seq !== null && (typeof seq !== "number" || !Number.isInteger(seq))) return "`s` is not an integer"
  if (name !== null && typeof name !== "string") return "`t` is not a string"
  if (op === Op.Dispatch && (seq === null || name === null)) return "dispatch without `s` or `t`"
  if (payload.s === seq && payload.t === name) return payload as Envelope
  return { op, d: payload.d, s: seq, t: name }
}

export const Hello = Schema.Struct({ heartbeat_interval: Schema.Int.check(Schema.isGreaterThan(0)) })
export type Hello = typeof Hello.Type

export const Ready = Schema.Struct({
  v: Schema.Int,
  session_id: Schema.String,
  resume_gateway_url: Schema.String,
  user: Schema.Struct({ id: Schema.String, username: Schema.String }),
  guilds: Schema.Array(Schema.Struct({ id: Schema.String })),
  shard: Schema.optional(Schema.Tuple([Schema.Int, Schema.Int])),
  application: Schema.optional(Schema.Struct({ id: Schema.String })),
})
export type Ready = typeof Ready.Type

/** Invalid Session's `d`: whether the session may be resumed. */
export const InvalidSessionData = Schema.Boolean

/**
 * A dispatch (op 0) of an event discord-api-types knows, typed as Discord documents it.
 * `type` is the event name as a string literal (`"MESSAGE_CREATE"`), not the enum member,
 * so `if (d.type === "MESSAGE_CREATE") d.data.content` narrows without casts.
 */
export type KnownDispatch = GatewayDispatchPayload extends infer P
  ? P extends { readonly t: infer T extends string; readonly d: infer D }
    ? { readonly seq: number; readonly type: `${T}`; readonly data: D }
    : never
  : never

declare const unknownEventName: unique symbol
/**
 * The name of an event discord-api-types does not know (newer than its types, or a fake's).
 * A string at run time (`String(name)` or `eventName` gives it as one); typed apart from
 * `string` so that comparing `type` with a known name narrows the union to that event alone.
 */
export interface UnknownEventName extends String {
  readonly [unknownEventName]: true
}

/** A dispatch whose event discord-api-types does not know: it still arrives, its data untyped. */
export interface UnknownDispatch {
  readonly seq: number
  readonly type: UnknownEventName
  readonly data: unknown
}

/**
 * A dispatch as Vigil hands it on: sequence, event name and data, discriminated by `type`.
 * The data is Discord's JSON as parsed, not validated (validating every event would cost
 * the hot path); the types describe what Discord sends. Only READY is decoded.
 */
export type Dispatch = KnownDispatch | UnknownDispatch

/** The event names discord-api-types knows. */
export type DispatchType = KnownDispatch["type"]

/** The event's name as a string, whether its type is known or not. */
export const eventName = (dispatch: Dispatch): string => dispatch.type as string

/** Builds a dispatch from the envelope's fields: the one place raw names become the union. */
export const makeDispatch = (seq: number, type: string, data: unknown): Dispatch =>
  ({ seq, type, data }) as unknown as Dispatch

// ---------------------------------------------------------------------------
// Outbound payloads

export interface IdentifyProperties {
  readonly os: string
  readonly browser: string
  readonly device: string
}

export interface IdentifyOptions {
  readonly token: Redacted.Redacted<string>
  readonly intents: Intents.Intents
  readonly shard: readonly [id: number, count: number]
  readonly properties?: IdentifyProperties | undefined
  readonly largeThreshold?: number | undefined
  readonly presence?: GatewayPresenceUpdateData | undefined
}

const platform = (globalThis as { process?: { platform?: string } }).process?.platform ?? "unknown"
export const defaultProperties: IdentifyProperties = { os: platform, browser: "vigil", device: "vigil" }

/**
 * Builders return the wire text. The token is unwrapped only here, into the string that
 * goes on the socket; nothing else ever sees it.
 */
export const identify = (options: IdentifyOptions): string =>
  JSON.stringify({
    op: Op.Identify,
    d: {
      token: Redacted.value(options.token),
      properties: options.properties ?? defaultProperties,
      intents: Intents.bitfield(options.intents),
      shard: options.shard,
      ...(options.largeThreshold !== undefined ? { large_threshold: options.largeThreshold } : {}),
      ...(options.presence !== undefined ? { presence: options.presence } : {}),
    },
  })

export const resume = (options: {
  readonly token: Redacted.Redacted<string>
  readonly sessionId: string
  readonly seq: number | null
}): string =>
  JSON.stringify({
    op: Op.Resume,
    d: { token: Redacted.value(options.token), session_id: options.sessionId, seq: options.seq },
  })

export const heartbeat = (seq: number | null): string => `{"op":1,"d":${seq === null ? "null" : seq}}`

/** Any other command (presence, voice state, request guild members, …). */
export const command = (op: number, d: unknown): string => JSON.stringify({ op, d })

/** Builds the connect URL: `v`, `encoding=json`, and the transport compression if any. */
/** Whether a gateway URL (configured, or a server's `resume_gateway_url`) can be used at all. */
export const isUrl = (text: string): boolean => URL.canParse(text)

/** The URL to connect to; `base` must satisfy `isUrl`. */
export const gatewayUrl = (base: string, compression: Compression): string => {
  const url = new URL(base)
  url.searchParams.set("v", String(ApiVersion))
  url.searchParams.set("encoding", "json")
  if (compression !== "none") url.searchParams.set("compress", compression)
  else url.searchParams.delete("compress")
  return url.toString()
}

export type Compression = "none" | "zlib-stream" | "zstd-stream"

/** Size in bytes of a string encoded as UTF-8, counted without encoding it. */
export const utf8Length = (text: string): number => {
  let bytes = text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) bytes += 1
    else {
      const next = text.charCodeAt(i + 1)
      // a surrogate pair is 2 UTF-16 units and 4 bytes; anything else here is 3 bytes
      if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) i++
      bytes += 2
    }
  }
  return bytes
}
