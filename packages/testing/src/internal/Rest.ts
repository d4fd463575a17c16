/**
 * A slice of Discord's REST API for bots that answer messages: `POST /channels/{id}/messages`
 * with Discord's rate limiting (a bucket per channel, plus the global per-bot limit), its
 * headers and its 429 body, and the validation errors a bot is most likely to hit. Time
 * is `Clock` time, so the buckets follow `TestClock` too.
 */
import { Predicate } from "effect"
import * as Traffic from "../Traffic.ts"

export interface RestConfig {
  /** Messages per channel per window. Default 5 per 5 s. */
  readonly messageLimit: { readonly requests: number; readonly windowMillis: number }
  /** Requests per bot per window, whatever the route. Default 50 per second. */
  readonly globalLimit: { readonly requests: number; readonly windowMillis: number }
}

/** A message as the fake stored it. */
export interface PostedMessage {
  readonly id: string
  readonly channelId: string
  readonly content: string
  readonly body: unknown
  readonly at: number
}

/** Injected responses for the next posts, used up one per request. */
export interface PostFault {
  readonly status: number
  readonly retryAfterMillis: number | undefined
  readonly global: boolean
  remaining: number
}

export interface Response {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: unknown
}

interface Window {
  resetAt: number
  used: number
}

const seconds = (ms: number) => (ms / 1000).toFixed(3)

export const make = (config: RestConfig, bot: { readonly id: string; readonly username: string }) => {
  const buckets = new Map<string, Window>()
  const global: Window = { resetAt: 0, used: 0 }
  const messages: Array<PostedMessage> = []
  const faults: Array<PostFault> = []
  let nextMessage = 0

  /** Takes one request from a window; returns the window's state after it, or how long to wait. */
  const take = (window: Window, limit: { requests: number; windowMillis: number }, now: number) => {
    if (now >= window.resetAt) {
      window.resetAt = now + limit.windowMillis
      window.used = 0
    }
    if (window.used >= limit.requests) return { ok: false as const, retryAfter: window.resetAt - now }
    window.used++
    return { ok: true as const, remaining: limit.requests - window.used, resetAfter: window.resetAt - now }
  }

  const limited = (retryAfterMillis: number, scope: "user" | "global", headers: Record<string, string>) => ({
    status: 429,
    headers: {
      ...headers,
      "retry-after": String(Math.ceil(retryAfterMillis / 1000)),
      "x-ratelimit-scope": scope,
      ...(scope === "global" ? { "x-ratelimit-global": "true" } : {}),
    },
    body: {
      message: "You are being rate limited.",
      retry_after: Number(seconds(retryAfterMillis)),
      global: scope === "global",
    },
  })

  const postMessage = (channelId: string, body: unknown, now: number): Response => {
    const fault = faults[0]
    if (fault !== undefined) {
      if (--fault.remaining <= 0) faults.shift()
      if (fault.status === 429) {
        return limited(fault.retryAfterMillis ?? 1000, fault.global ? "global" : "user", {})
      }
      return {
        status: fault.status,
        headers: {},
        body: { message: `${fault.status}: injected by the test`, code: 0 },
      }
    }
    const globalTurn = take(global, config.globalLimit, now)
    if (!globalTurn.ok) return limited(globalTurn.retryAfter, "global", {})

    const bucket = buckets.get(channelId) ?? { resetAt: 0, used: 0 }
    buckets.set(channelId, bucket)
    const turn = take(bucket, config.messageLimit, now)
    const bucketHeaders = (remaining: number, resetAfter: number): Record<string, string> => ({
      "x-ratelimit-limit": String(config.messageLimit.requests),
      "x-ratelimit-remaining": String(remaining),
      "x-ratelimit-reset": seconds(now + resetAfter),
      "x-ratelimit-reset-after": seconds(resetAfter),
      "x-ratelimit-bucket": `fake-messages-${channelId}`,
    })
    if (!turn.ok) return limited(turn.retryAfter, "user", bucketHeaders(0, turn.retryAfter))
    const headers = bucketHeaders(turn.remaining, turn.resetAfter)

    const fields = Predicate.isObject(body) ? (body as Record<string, unknown>) : {}
    const content = Predicate.isString(fields.content) ? fields.content : ""
    const embeds = Array.isArray(fields.embeds) ? fields.embeds : []
    if (content.length === 0 && embeds.length === 0) {
      return { status: 400, headers, body: { message: "Cannot send an empty message", code: 50006 } }
    }
    if (content.length > 2000) {
      return {
        status: 400,
        headers,
        body: {
          message: "Invalid Form Body",
          code: 50035,
          errors: {
            content: {
              _errors: [{ code: "BASE_TYPE_MAX_LENGTH", message: "Must be 2000 or fewer in length." }],
            },
          },
        },
      }
    }
    const id = Traffic.snowflake(now, nextMessage++)
    messages.push({ id, channelId, content, body, at: now })
    return {
      status: 200,
      headers,
      body: {
        id,
        channel_id: channelId,
        content,
        embeds,
        author: {
          id: bot.id,
          username: bot.username,
          discriminator: "0",
          global_name: null,
          avatar: null,
          bot: true,
        },
        timestamp: new Date(now).toISOString(),
        edited_timestamp: null,
        tts: false,
        mention_everyone: false,
        mentions: [],
        mention_roles: [],
        attachments: [],
        pinned: false,
        type: 0,
        ...(Predicate.isString(fields.nonce) ? { nonce: fields.nonce } : {}),
      },
    }
  }

  return {
    postMessage,
    messages: () => messages.slice(),
    addFault: (fault: PostFault) => {
      faults.push(fault)
    },
  }
}

export type Rest = ReturnType<typeof make>
