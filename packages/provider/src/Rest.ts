/**
 * Discord's REST API: any route through `request`, and typed helpers for what a bot does
 * most (send, reply with embeds and components, edit, delete, react, answer interactions;
 * bodies and results typed by discord-api-types) — with its rate limits honoured the way
 * Discord asks:
 *
 * - **Per-route buckets**, learned from the answers (`X-RateLimit-Limit`, `-Remaining`,
 *   `-Reset-After`, `-Bucket`), keyed by route and major parameter (the channel). Requests
 *   to one bucket go one at a time; when the bucket is empty, the next waits for its reset
 *   instead of being sent (no request is spent on a certain 429).
 * - **The global limit**: at most `globalLimit` requests per window across all routes (50
 *   per second by default), and a global 429 (`X-RateLimit-Global`) pauses every request.
 * - **429**: waits `retry_after` (body, seconds; else the `Retry-After` header), then
 *   retries, at most `maxRateLimitRetries` times, and never waits longer than
 *   `maxRateLimitWait` (else `RateLimited` at once).
 * - **5xx, timeouts, network errors**: retried with exponential backoff, at most
 *   `maxRetries` times. Message posts carry a nonce with `enforce_nonce`, so a retry of a
 *   post that did go through returns the same message instead of sending it twice.
 *
 * Time is the `Clock`'s (`Effect.sleep`), so `TestClock` drives every wait. The token is
 * unwrapped only into the `Authorization` header; Effect's `HttpClient` redacts that header
 * in its spans, and no error here carries a request, a header or a response. Interaction
 * tokens travel in the path: those requests get no HTTP span (its URL would show them), and
 * logs, errors and Vigil's spans name the route template, never the path.
 */
import type {
  APIMessage,
  RESTPatchAPIChannelMessageJSONBody,
  RESTPatchAPIInteractionOriginalResponseJSONBody,
  RESTPostAPIChannelMessageJSONBody,
  RESTPostAPIInteractionCallbackJSONBody,
} from "discord-api-types/v10"
import { Clock, Duration, Effect, Option, Random, Redacted, Schema, Semaphore } from "effect"
import { HttpClient, HttpClientRequest, type HttpClientResponse } from "effect/http"
import {
  InvalidMessage,
  MissingPermissions,
  NotFound,
  RateLimited,
  RestError,
  type SendError,
  Unauthorized,
} from "./ProviderError.ts"
import * as RestMetrics from "./RestMetrics.ts"

export const defaultApiBaseUrl = "https://discord.com/api/v10"

export interface RestConfig {
  readonly token: Redacted.Redacted<string>
  /** Default `https://discord.com/api/v10`. */
  readonly apiBaseUrl?: string | undefined
  /** Retries after a 429 before failing with `RateLimited`. Default 3. */
  readonly maxRateLimitRetries?: number | undefined
  /** Asked to wait longer than this (bucket or 429), fail with `RateLimited` at once. Default 60 s. */
  readonly maxRateLimitWait?: Duration.Input | undefined
  /** Retries after a 5xx, a timeout or a network error. Default 3. */
  readonly maxRetries?: number | undefined
  /** First backoff after a 5xx/network failure, doubled per retry. Default 500 ms. */
  readonly retryBackoff?: Duration.Input | undefined
  /** Requests per window across all routes. Default 50 per second (Discord's global limit). */
  readonly globalLimit?: { readonly requests: number; readonly window: Duration.Input } | undefined
  /** Per attempt. Default 15 s. */
  readonly timeout?: Duration.Input | undefined
  /** Sent as `User-Agent` (Discord asks for `DiscordBot (url, version)`). */
  readonly userAgent?: string | undefined
}

export interface MessageOptions {
  readonly content: string
  /** Answer this message (a reply). */
  readonly replyTo?: string | undefined
  /** Discord's `allowed_mentions`, as is. Default: Discord's (mentions in the content ping). */
  readonly allowedMentions?: unknown
  /** De-duplicates retries (`enforce_nonce`). Default: a fresh one per call. */
  readonly nonce?: string | undefined
}

/** The message Discord created. */
export const SentMessage = Schema.Struct({
  id: Schema.String,
  channel_id: Schema.String,
  content: Schema.String,
  timestamp: Schema.String,
})
export type SentMessage = typeof SentMessage.Type

/** A snapshot of what the limiter knows, for health and tests. */
export interface RateLimitState {
  readonly buckets: ReadonlyArray<{
    readonly key: string
    readonly hash: string | undefined
    readonly limit: number | undefined
    readonly remaining: number | undefined
    readonly resetAt: number | undefined
  }>
  readonly globalPausedUntil: number | undefined
  readonly requests: number
  readonly rateLimited: number
  readonly retries: number
}

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE"

/** Any route of Discord's API, as `request` takes it. */
export interface RequestOptions {
  readonly method: Method
  /**
   * The route template, e.g. `/channels/{channel_id}/messages/{message_id}`: buckets are
   * per template and major parameter (`channel_id`, `guild_id`, `webhook_id` or
   * `interaction_id`), and only the template reaches logs, spans and errors.
   */
  readonly route: string
  /** A value for every `{name}` in the route (each is URL-encoded). */
  readonly params?: Readonly<Record<string, string>> | undefined
  /** Sent as JSON. */
  readonly body?: unknown
  /** Recorded in the guild's audit log (`X-Audit-Log-Reason`). */
  readonly reason?: string | undefined
}

/** A message to create: Discord's body (content, embeds, components, …), typed by discord-api-types. */
export type CreateMessage = RESTPostAPIChannelMessageJSONBody

export interface RestClient {
  /**
   * Any route, through the same buckets, global limit, 429 handling and typed errors as
   * everything else here; the answer's JSON as it came (undefined for 204 No Content).
   */
  readonly request: (options: RequestOptions) => Effect.Effect<unknown, SendError>
  /** `POST /channels/{channelId}/messages`: text, checked before sending, the answer decoded. */
  readonly sendMessage: (
    channelId: string,
    message: string | MessageOptions,
  ) => Effect.Effect<SentMessage, SendError>
  /**
   * `POST /channels/{channelId}/messages` with any body Discord takes (embeds, components,
   * `message_reference`…). A nonce is added (with `enforce_nonce`) unless the body has one.
   */
  readonly createMessage: (channelId: string, message: CreateMessage) => Effect.Effect<APIMessage, SendError>
  /** `createMessage` as a reply to `messageId` (which may since have been deleted). */
  readonly reply: (
    channelId: string,
    messageId: string,
    message: CreateMessage,
  ) => Effect.Effect<APIMessage, SendError>
  /** `PATCH /channels/{channelId}/messages/{messageId}`. */
  readonly editMessage: (
    channelId: string,
    messageId: string,
    edit: RESTPatchAPIChannelMessageJSONBody,
  ) => Effect.Effect<APIMessage, SendError>
  /** `DELETE /channels/{channelId}/messages/{messageId}`. */
  readonly deleteMessage: (
    channelId: string,
    messageId: string,
    options?: { readonly reason?: string | undefined },
  ) => Effect.Effect<void, SendError>
  /** `PUT …/reactions/{emoji}/@me`: a unicode emoji (`"👍"`) or a custom one as `name:id`. */
  readonly react: (channelId: string, messageId: string, emoji: string) => Effect.Effect<void, SendError>
  /** `POST /interactions/{id}/{token}/callback`: the interaction's first answer (within 3 s). */
  readonly respondToInteraction: (
    interaction: { readonly id: string; readonly token: string },
    response: RESTPostAPIInteractionCallbackJSONBody,
  ) => Effect.Effect<void, SendError>
  /** `PATCH /webhooks/{applicationId}/{token}/messages/@original`: edits that answer (a deferred one, say). */
  readonly editInteractionResponse: (
    interaction: { readonly applicationId: string; readonly token: string },
    edit: RESTPatchAPIInteractionOriginalResponseJSONBody,
  ) => Effect.Effect<APIMessage, SendError>
  readonly state: Effect.Effect<RateLimitState>
}

// ---------------------------------------------------------------------------

interface Bucket {
  readonly lock: Semaphore.Semaphore
  hash: string | undefined
  limit: number | undefined
  /** Requests left until `resetAt`; undefined until an answer announced it. */
  remaining: number | undefined
  resetAt: number | undefined
}

interface Route {
  readonly method: Method
  /** The route template, e.g. `/channels/{channel_id}/messages`. */
  readonly route: string
  readonly path: string
  /** The major parameter: buckets are per route and per this value. */
  readonly major: string
  readonly body: unknown
  readonly reason?: string | undefined
  /** The path carries a secret (an interaction token): no HTTP span, whose URL would show it. */
  readonly secretPath?: boolean | undefined
}

const majorParameters = ["channel_id", "guild_id", "webhook_id", "interaction_id"]

/**
 * The route with its parameters in place, or what is missing. Parameters are URL-encoded,
 * so a value cannot reach another route (`../`); a secret one marks the path as secret.
 */
const resolveRoute = (options: RequestOptions): Route | string => {
  const params = options.params ?? {}
  let missing: string | undefined
  const path = options.route.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = params[name]
    if (value === undefined || value.length === 0) missing ??= name
    return encodeURIComponent(value ?? "")
  })
  if (missing !== undefined) return `the route parameter ${missing} is missing`
  const major = majorParameters.find((name) => params[name] !== undefined)
  return {
    method: options.method,
    route: options.route,
    path,
    major: major === undefined ? "" : params[major]!,
    body: options.body,
    reason: options.reason,
    secretPath: /\{(interaction_token|webhook_token)\}/.test(options.route),
  }
}

const RateLimitBody = Schema.Struct({
  retry_after: Schema.Number,
  global: Schema.optional(Schema.Boolean),
})

const ErrorBody = Schema.Struct({
  message: Schema.optional(Schema.String),
  code: Schema.optional(Schema.Int),
})

const decodeRateLimitBody = Schema.decodeUnknownOption(RateLimitBody)
const decodeErrorBody = Schema.decodeUnknownOption(ErrorBody)
const decodeSentMessage = Schema.decodeUnknownOption(SentMessage)

const headerNumber = (response: HttpClientResponse.HttpClientResponse, name: string): number | undefined => {
  const raw = response.headers[name]
  if (raw === undefined || raw.length === 0) return undefined
  const value = Number(raw)
  return Number.isFinite(value) ? value : undefined
}

const describeCause = (error: unknown): string => {
  // HttpClientError carries the request (with its headers): keep only its tag and reason.
  const reason = (error as { reason?: { _tag?: unknown } } | undefined)?.reason?._tag
  if (typeof reason === "string") return `network: ${reason}`
  const tag = (error as { _tag?: unknown } | undefined)?._tag
  return typeof tag === "string" ? tag : "unknown failure"
}

/** Classified outcome of one attempt. */
type Attempt =
  | { readonly _tag: "Done"; readonly body: unknown }
  | { readonly _tag: "RateLimited"; readonly retryAfterMillis: number; readonly global: boolean }
  | { readonly _tag: "Transient"; readonly status: number | undefined; readonly detail: string }
  | { readonly _tag: "Failed"; readonly error: SendError }

export const make = Effect.fnUntraced(function* (
  config: RestConfig,
): Effect.fn.Return<RestClient, never, HttpClient.HttpClient> {
  const client = yield* HttpClient.HttpClient
  const apiBase = (config.apiBaseUrl ?? defaultApiBaseUrl).replace(/\/+$/, "")
  const maxRateLimitRetries = config.maxRateLimitRetries ?? 3
  const maxWait = Duration.toMillis(config.maxRateLimitWait ?? Duration.seconds(60))
  const maxRetries = config.maxRetries ?? 3
  const metrics = RestMetrics.make()
  const backoff = Duration.toMillis(config.retryBackoff ?? Duration.millis(500))
  const globalRequests = config.globalLimit?.requests ?? 50
  const globalWindow = Duration.toMillis(config.globalLimit?.window ?? Duration.seconds(1))
  const timeout = config.timeout ?? Duration.seconds(15)
  const authorization = `Bot ${Redacted.value(config.token)}`
  const userAgent = config.userAgent ?? "DiscordBot (https://github.com/vigil, 0.1.0)"

  const buckets = new Map<string, Bucket>()
  /** Send times of the last `globalRequests` requests: a sliding window. */
  const recent: Array<number> = []
  let globalPausedUntil = 0
  let requests = 0
  let rateLimited = 0
  let retries = 0

  const bucketOf = (key: string): Bucket => {
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      bucket = {
        lock: Semaphore.makeUnsafe(1),
        hash: undefined,
        limit: undefined,
        remaining: undefined,
        resetAt: undefined,
      }
      buckets.set(key, bucket)
    }
    return bucket
  }

  /** Waits until the global limit allows one more request, and takes it. */
  const takeGlobal: Effect.Effect<void> = Effect.gen(function* () {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      if (now < globalPausedUntil) {
        yield* Effect.sleep(globalPausedUntil - now)
        continue
      }
      while (recent.length > 0 && recent[0]! <= now - globalWindow) recent.shift()
      if (recent.length < globalRequests) {
        recent.push(now)
        return
      }
      yield* Effect.sleep(recent[0]! + globalWindow - now)
    }
  })

  /** What the answer's headers say about the bucket. */
  const learn = (bucket: Bucket, response: HttpClientResponse.HttpClientResponse, now: number) => {
    const hash = response.headers["x-ratelimit-bucket"]
    if (hash !== undefined) bucket.hash = hash
    const limit = headerNumber(response, "x-ratelimit-limit")
    if (limit !== undefined) bucket.limit = limit
    const remaining = headerNumber(response, "x-ratelimit-remaining")
    const resetAfter = headerNumber(response, "x-ratelimit-reset-after")
    if (remaining !== undefined) bucket.remaining = remaining
    if (resetAfter !== undefined) bucket.resetAt = now + Math.ceil(resetAfter * 1000)
  }

  const attempt = (route: Route, bucket: Bucket, attempts: number): Effect.Effect<Attempt> =>
    Effect.gen(function* () {
      yield* takeGlobal
      requests++
      if (bucket.remaining !== undefined) bucket.remaining = Math.max(0, bucket.remaining - 1)
      const base = HttpClientRequest.make(route.method)(`${apiBase}${route.path}`).pipe(
        HttpClientRequest.setHeader("authorization", authorization),
        HttpClientRequest.setHeader("user-agent", userAgent),
        HttpClientRequest.acceptJson,
      )
      const withReason =
        route.reason === undefined
          ? base
          : HttpClientRequest.setHeader(base, "x-audit-log-reason", encodeURIComponent(route.reason))
      const request =
        route.body === undefined ? withReason : HttpClientRequest.bodyJsonUnsafe(withReason, route.body)
      const execute = route.secretPath
        ? client.execute(request).pipe(Effect.provideService(HttpClient.TracerDisabledWhen, () => true))
        : client.execute(request)
      const result = yield* execute.pipe(
        Effect.flatMap((response) =>
          Effect.map(
            Effect.orElseSucceed(response.json, () => undefined as unknown),
            (body) => ({ response, body }),
          ),
        ),
        Effect.timeoutOption(timeout),
        Effect.result,
      )
      const now = yield* Clock.currentTimeMillis
      if (result._tag === "Failure") {
        yield* metrics.request(route, "network")
        return { _tag: "Transient", status: undefined, detail: describeCause(result.failure) } as const
      }
      if (Option.isNone(result.success)) {
        yield* metrics.request(route, "timeout")
        return {
          _tag: "Transient",
          status: undefined,
          detail: `no answer within ${Duration.toMillis(timeout)} ms`,
        } as const
      }
      const { response, body } = result.success.value
      learn(bucket, response, now)
      const status = response.status
      yield* metrics.request(route, status)
      if (status >= 200 && status < 300) return { _tag: "Done", body } as const
      const fields = { method: route.method, route: route.route }
      const error = Option.getOrUndefined(decodeErrorBody(body))
      const detail = error?.message ?? `HTTP ${status}`
      if (status === 429) {
        const limitBody = Option.getOrUndefined(decodeRateLimitBody(body))
        const afterSeconds = limitBody?.retry_after ?? headerNumber(response, "retry-after") ?? 1
        const global = response.headers["x-ratelimit-global"] === "true" || limitBody?.global === true
        return { _tag: "RateLimited", retryAfterMillis: Math.ceil(afterSeconds * 1000), global } as const
      }
      if (status >= 500 || status === 408) return { _tag: "Transient", status, detail } as const
      const failed = (e: SendError) => ({ _tag: "Failed", error: e }) as const
      switch (status) {
        case 401:
          return failed(new Unauthorized(fields))
        case 403:
          return failed(new MissingPermissions({ ...fields, code: error?.code, detail }))
        case 404:
          return failed(new NotFound({ ...fields, code: error?.code, detail }))
        case 400:
          return failed(new InvalidMessage({ ...fields, code: error?.code, detail }))
        default:
          return failed(new RestError({ ...fields, status, code: error?.code, detail, attempts }))
      }
    })

  /**
   * Runs a request through its bucket and the global limit, with bounded retries, as one span
   * named for its route bucket (the template, never the path).
   */
  const execute = (route: Route): Effect.Effect<unknown, SendError> =>
    Effect.withSpan(throughLimits(route), "DiscordRest.request", {
      attributes: { "http.request.method": route.method, "http.route": route.route },
    })

  const throughLimits = (route: Route): Effect.Effect<unknown, SendError> => {
    const bucket = bucketOf(`${route.method} ${route.route}:${route.major}`)
    const fields = { method: route.method, route: route.route }
    return Semaphore.withPermits(
      bucket.lock,
      1,
    )(
      Effect.gen(function* () {
        let attempts = 0
        let limitedTimes = 0
        let failures = 0
        while (true) {
          // An empty bucket: wait for its reset rather than spend a request on a certain 429.
          const now = yield* Clock.currentTimeMillis
          if (bucket.remaining === 0 && bucket.resetAt !== undefined && now < bucket.resetAt) {
            const wait = bucket.resetAt - now
            if (wait > maxWait) {
              return yield* new RateLimited({ ...fields, retryAfterMillis: wait, global: false, attempts })
            }
            yield* Effect.logDebug(`${route.route}: bucket empty, waiting ${wait} ms for its reset`)
            yield* Effect.sleep(wait)
          }
          if (bucket.resetAt !== undefined && (yield* Clock.currentTimeMillis) >= bucket.resetAt) {
            bucket.remaining = undefined // a new window: whatever the next answer says
            bucket.resetAt = undefined
          }
          attempts++
          const outcome = yield* attempt(route, bucket, attempts)
          switch (outcome._tag) {
            case "Done":
              return outcome.body
            case "Failed":
              return yield* Effect.fail(outcome.error)
            case "RateLimited": {
              rateLimited++
              yield* metrics.rateLimited(route, outcome.global)
              limitedTimes++
              const at = yield* Clock.currentTimeMillis
              if (outcome.global)
                globalPausedUntil = Math.max(globalPausedUntil, at + outcome.retryAfterMillis)
              else {
                bucket.remaining = 0
                bucket.resetAt = Math.max(bucket.resetAt ?? 0, at + outcome.retryAfterMillis)
              }
              if (limitedTimes > maxRateLimitRetries || outcome.retryAfterMillis > maxWait) {
                return yield* new RateLimited({
                  ...fields,
                  retryAfterMillis: outcome.retryAfterMillis,
                  global: outcome.global,
                  attempts,
                })
              }
              yield* Effect.logDebug(
                `${route.route}: 429${outcome.global ? " (global)" : ""}, retrying after ${outcome.retryAfterMillis} ms`,
              )
              retries++
              yield* metrics.retry(route, "rate_limit")
              continue // the wait happens at the top (bucket) or in takeGlobal (global)
            }
            case "Transient": {
              failures++
              if (failures > maxRetries) {
                return yield* new RestError({
                  ...fields,
                  status: outcome.status,
                  detail: outcome.detail,
                  attempts,
                })
              }
              const jitter = yield* Random.next
              const wait = Math.round(backoff * 2 ** (failures - 1) * (0.75 + jitter / 2))
              yield* Effect.logDebug(`${route.route}: ${outcome.detail}; retry ${failures} in ${wait} ms`)
              retries++
              yield* metrics.retry(route, "transient")
              yield* Effect.sleep(wait)
            }
          }
        }
      }),
    )
  }

  /**
   * Time, a per-client count and a random part (at most 25 characters, Discord's limit). The
   * count keeps two sends at one instant apart even when Random repeats itself (a pinned
   * Random in tests); the clock may stand at a fraction of a millisecond (TestClock).
   */
  let nonces = 0
  const newNonce = Effect.gen(function* () {
    const now = Math.floor(yield* Clock.currentTimeMillis)
    const r = yield* Random.nextIntBetween(0, 36 ** 4)
    nonces++
    return `${now.toString(36)}-${nonces.toString(36)}-${r.toString(36)}`
  })

  const sendMessage = (channelId: string, message: string | MessageOptions) =>
    Effect.gen(function* () {
      const options: MessageOptions = typeof message === "string" ? { content: message } : message
      const fields = { method: "POST", route: "/channels/{channel_id}/messages" }
      if (!/^\d{1,20}$/.test(channelId)) {
        return yield* new InvalidMessage({ ...fields, detail: "the channel id is not a snowflake" })
      }
      if (options.content.length === 0) {
        return yield* new InvalidMessage({ ...fields, detail: "the content is empty" })
      }
      if (options.content.length > 2000) {
        return yield* new InvalidMessage({
          ...fields,
          detail: `the content has ${options.content.length} characters (at most 2000)`,
        })
      }
      const nonce = options.nonce ?? (yield* newNonce)
      const body = {
        content: options.content,
        nonce,
        enforce_nonce: true,
        ...(options.replyTo !== undefined
          ? { message_reference: { message_id: options.replyTo, fail_if_not_exists: false } }
          : {}),
        ...(options.allowedMentions !== undefined ? { allowed_mentions: options.allowedMentions } : {}),
      }
      const answer = yield* execute({
        method: "POST",
        route: fields.route,
        path: `/channels/${channelId}/messages`,
        major: channelId,
        body,
      })
      const sent = decodeSentMessage(answer)
      if (Option.isNone(sent)) {
        return yield* new RestError({
          ...fields,
          status: 200,
          detail: "unexpected response body",
          attempts: 1,
        })
      }
      return sent.value
    }).pipe(Effect.withSpan("DiscordRest.sendMessage", { attributes: { "discord.channel_id": channelId } }))

  const state = Effect.sync(
    (): RateLimitState => ({
      buckets: [...buckets.entries()].map(([key, b]) => ({
        key,
        hash: b.hash,
        limit: b.limit,
        remaining: b.remaining,
        resetAt: b.resetAt,
      })),
      globalPausedUntil: globalPausedUntil > 0 ? globalPausedUntil : undefined,
      requests,
      rateLimited,
      retries,
    }),
  )

  const request = (options: RequestOptions): Effect.Effect<unknown, SendError> =>
    Effect.suspend(() => {
      const route = resolveRoute(options)
      return typeof route === "string"
        ? Effect.fail(new InvalidMessage({ method: options.method, route: options.route, detail: route }))
        : execute(route)
    })

  // The helpers below trust Discord's answers to match discord-api-types (as events do):
  // the types describe what Discord sends; decoding every field would buy nothing here.
  const message = (answer: unknown) => answer as APIMessage

  const createMessage = (channelId: string, body: CreateMessage) =>
    Effect.gen(function* () {
      const nonce = body.nonce ?? (yield* newNonce)
      return message(
        yield* request({
          method: "POST",
          route: "/channels/{channel_id}/messages",
          params: { channel_id: channelId },
          body: { ...body, nonce, enforce_nonce: body.enforce_nonce ?? true },
        }),
      )
    })

  const messageRoute = "/channels/{channel_id}/messages/{message_id}"

  const rest: RestClient = {
    request,
    sendMessage,
    createMessage,
    reply: (channelId, messageId, body) =>
      createMessage(channelId, {
        ...body,
        message_reference: { message_id: messageId, fail_if_not_exists: false },
      }),
    editMessage: (channelId, messageId, edit) =>
      Effect.map(
        request({
          method: "PATCH",
          route: messageRoute,
          params: { channel_id: channelId, message_id: messageId },
          body: edit,
        }),
        message,
      ),
    deleteMessage: (channelId, messageId, options) =>
      Effect.asVoid(
        request({
          method: "DELETE",
          route: messageRoute,
          params: { channel_id: channelId, message_id: messageId },
          reason: options?.reason,
        }),
      ),
    react: (channelId, messageId, emoji) =>
      Effect.asVoid(
        request({
          method: "PUT",
          route: `${messageRoute}/reactions/{emoji}/@me`,
          params: { channel_id: channelId, message_id: messageId, emoji },
        }),
      ),
    respondToInteraction: (interaction, response) =>
      Effect.asVoid(
        request({
          method: "POST",
          route: "/interactions/{interaction_id}/{interaction_token}/callback",
          params: { interaction_id: interaction.id, interaction_token: interaction.token },
          body: response,
        }),
      ),
    editInteractionResponse: (interaction, edit) =>
      Effect.map(
        request({
          method: "PATCH",
          route: "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
          params: { webhook_id: interaction.applicationId, webhook_token: interaction.token },
          body: edit,
        }),
        message,
      ),
    state,
  }
  return rest
})
