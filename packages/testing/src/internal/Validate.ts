/**
 * How the fake gateway judges what a client sends: the connect URL's query, Identify and
 * Resume. Each check answers with the close code Discord uses for that mistake.
 */
import { Predicate, Result } from "effect"
import type { TransportCompression } from "./Encoder.ts"

export interface Refusal {
  readonly code: number
  readonly reason: string
}

const refuse = (code: number, reason: string) => Result.fail<Refusal>({ code, reason })

/**
 * Every intent bit Discord defines today (GUILDS … DIRECT_MESSAGE_POLLS); any other bit is
 * an invalid intent (4013). Kept here rather than imported so the fake states its own rules.
 */
export const knownIntents = 0b1_1111_1111_1111_1111 | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25)

/** GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT: refused (4014) unless enabled for the bot. */
export const privilegedIntents = (1 << 1) | (1 << 8) | (1 << 15)

export interface ConnectQuery {
  readonly version: number
  readonly compression: TransportCompression | undefined
}

/** `v` must be 9 or 10 (4012); only `encoding=json` and the two stream compressions are spoken. */
export const connectQuery = (search: URLSearchParams): Result.Result<ConnectQuery, Refusal> => {
  const v = Number(search.get("v"))
  if (v !== 9 && v !== 10) return refuse(4012, `invalid API version: ${search.get("v") ?? "(none)"}`)
  const encoding = search.get("encoding") ?? "json"
  if (encoding !== "json") return refuse(4002, `encoding ${encoding} is not supported by FakeGateway`)
  const compress = search.get("compress")
  if (compress !== null && compress !== "zlib-stream" && compress !== "zstd-stream") {
    return refuse(4002, `unknown transport compression: ${compress}`)
  }
  return Result.succeed({ version: v, compression: compress ?? undefined })
}

export interface IdentifyRules {
  readonly token: string
  /** Why this shard may not run (4011), if it may not. */
  readonly shardingRequired: (shard: readonly [number, number]) => string | undefined
  readonly allowedPrivilegedIntents: number
}

export interface Identify {
  readonly intents: number
  readonly shard: readonly [number, number]
  readonly largeThreshold: number | undefined
  /** Payload compression asked for (`compress: true`). */
  readonly compress: boolean
}

const isInt = (value: unknown): value is number => Predicate.isNumber(value) && Number.isInteger(value)

/** The shard named by an Identify payload, if it names a well-formed one. */
export const shardOf = (d: unknown): readonly [number, number] | undefined => {
  if (!Predicate.isObject(d)) return undefined
  const shard = (d as { shard?: unknown }).shard
  if (shard === undefined) return [0, 1]
  if (!Array.isArray(shard) || shard.length !== 2 || !isInt(shard[0]) || !isInt(shard[1])) return undefined
  return [shard[0], shard[1]]
}

export const identify = (d: unknown, rules: IdentifyRules): Result.Result<Identify, Refusal> => {
  if (!Predicate.isObject(d) || Array.isArray(d)) return refuse(4002, "identify: `d` is not an object")
  const payload = d as Record<string, unknown>
  if (payload["token"] !== rules.token) return refuse(4004, "authentication failed")
  const properties = payload["properties"]
  if (
    !Predicate.isObject(properties) ||
    !["os", "browser", "device"].every((key) =>
      Predicate.isString((properties as Record<string, unknown>)[key]),
    )
  ) {
    return refuse(4002, "identify: `properties` must carry os, browser and device")
  }
  const intents = payload["intents"]
  if (!isInt(intents) || intents < 0 || intents > knownIntents || (intents & ~knownIntents) !== 0) {
    return refuse(4013, `invalid intents: ${String(intents)}`)
  }
  const disallowed = intents & privilegedIntents & ~rules.allowedPrivilegedIntents
  if (disallowed !== 0) return refuse(4014, `disallowed intents: ${disallowed}`)
  const shard = shardOf(payload)
  if (shard === undefined || shard[1] < 1 || shard[0] < 0 || shard[0] >= shard[1]) {
    return refuse(4010, `invalid shard: ${JSON.stringify(payload["shard"])}`)
  }
  const shardingRequired = rules.shardingRequired(shard)
  if (shardingRequired !== undefined) return refuse(4011, shardingRequired)
  const largeThreshold = payload["large_threshold"]
  if (
    largeThreshold !== undefined &&
    (!isInt(largeThreshold) || largeThreshold < 50 || largeThreshold > 250)
  ) {
    return refuse(4002, "identify: `large_threshold` must be an integer in 50–250")
  }
  if (payload["compress"] !== undefined && !Predicate.isBoolean(payload["compress"])) {
    return refuse(4002, "identify: `compress` is not a boolean")
  }
  return Result.succeed({ intents, shard, largeThreshold, compress: payload["compress"] === true })
}

export interface Resume {
  readonly sessionId: string
  readonly seq: number | null
}

export const resume = (d: unknown, token: string): Result.Result<Resume, Refusal> => {
  if (!Predicate.isObject(d) || Array.isArray(d)) return refuse(4002, "resume: `d` is not an object")
  const payload = d as Record<string, unknown>
  if (payload["token"] !== token) return refuse(4004, "authentication failed")
  if (!Predicate.isString(payload["session_id"])) return refuse(4002, "resume: `session_id` is not a string")
  const seq = payload["seq"] ?? null
  if (seq !== null && (!isInt(seq) || seq < 0)) return refuse(4002, "resume: `seq` is not an integer")
  return Result.succeed({ sessionId: payload["session_id"], seq })
}
