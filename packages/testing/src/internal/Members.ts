/**
 * Request Guild Members (op 8) as the fake answers it: each guild has `perGuild` generated
 * members (`Traffic.member`), matched by username prefix or by id, sent back as
 * GUILD_MEMBERS_CHUNK dispatches of at most `chunkSize` members carrying the request's
 * nonce; over the configured request rate, a RATE_LIMITED dispatch instead.
 */
import { Predicate, Result } from "effect"
import * as Traffic from "../Traffic.ts"
import type { Refusal } from "./Validate.ts"

export interface MembersConfig {
  readonly perGuild: number
  readonly chunkSize: number
  /** Requests per connection per window; undefined: unlimited. */
  readonly requestLimit: { readonly requests: number; readonly windowMillis: number } | undefined
}

export interface Request {
  readonly guildId: string
  readonly query: string | undefined
  readonly limit: number
  readonly userIds: ReadonlyArray<string> | undefined
  readonly presences: boolean
  /** Echoed only when valid (at most 32 bytes), as Discord does. */
  readonly nonce: string | undefined
}

const refuse = (reason: string) =>
  Result.fail<Refusal>({ code: 4002, reason: `request guild members: ${reason}` })

export const parse = (d: unknown): Result.Result<Request, Refusal> => {
  if (!Predicate.isObject(d) || Array.isArray(d)) return refuse("`d` is not an object")
  const p = d as Record<string, unknown>
  if (!Predicate.isString(p["guild_id"])) return refuse("`guild_id` must be one guild id")
  const userIds =
    p["user_ids"] === undefined ? undefined : Array.isArray(p["user_ids"]) ? p["user_ids"] : [p["user_ids"]]
  if (userIds !== undefined && (userIds.length > 100 || !userIds.every(Predicate.isString))) {
    return refuse("`user_ids` must be at most 100 ids")
  }
  if (userIds === undefined && !Predicate.isString(p["query"]))
    return refuse("`query` or `user_ids` is required")
  const limit = p["limit"] ?? 0
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0 || limit > 100_000) {
    return refuse("`limit` must be a non-negative integer")
  }
  const nonce = Predicate.isString(p["nonce"]) && Buffer.byteLength(p["nonce"]) <= 32 ? p["nonce"] : undefined
  return Result.succeed({
    guildId: p["guild_id"],
    query: Predicate.isString(p["query"]) ? p["query"] : undefined,
    limit,
    userIds: userIds as ReadonlyArray<string> | undefined,
    presences: p["presences"] === true,
    nonce,
  })
}

/** The GUILD_MEMBERS_CHUNK payloads answering `request`, in order (at least one). */
export const chunks = (request: Request, config: MembersConfig): ReadonlyArray<Record<string, unknown>> => {
  const all = Array.from({ length: config.perGuild }, (_, i) => Traffic.member(request.guildId, i))
  let found = all
  let notFound: ReadonlyArray<string> | undefined
  if (request.userIds !== undefined) {
    const wanted = new Set(request.userIds)
    found = all.filter((m) => wanted.has(m.user.id))
    const ids = new Set(found.map((m) => m.user.id))
    notFound = request.userIds.filter((id) => !ids.has(id))
  } else {
    const query = (request.query ?? "").toLowerCase()
    found = all.filter((m) => m.user.username.toLowerCase().startsWith(query))
    if (request.limit > 0) found = found.slice(0, request.limit)
  }
  const size = Math.max(1, config.chunkSize)
  const count = Math.max(1, Math.ceil(found.length / size))
  return Array.from({ length: count }, (_, index) => ({
    guild_id: request.guildId,
    members: found.slice(index * size, (index + 1) * size),
    chunk_index: index,
    chunk_count: count,
    ...(index === 0 && notFound !== undefined && notFound.length > 0 ? { not_found: notFound } : {}),
    ...(request.presences ? { presences: [] } : {}),
    ...(request.nonce !== undefined ? { nonce: request.nonce } : {}),
  }))
}

/** The RATE_LIMITED payload for a refused request. */
export const rateLimited = (request: Request, retryAfterMillis: number) => ({
  opcode: 8,
  retry_after: Number((retryAfterMillis / 1000).toFixed(3)),
  meta: { guild_id: request.guildId, ...(request.nonce !== undefined ? { nonce: request.nonce } : {}) },
})
