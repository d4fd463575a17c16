/**
 * A fake of Discord's REST API for bots: who the bot is (`GET /users/@me`), messages
 * (`POST /channels/{id}/messages`, edit, delete, react) and interaction answers
 * (`POST /interactions/{id}/{token}/callback`, edit of `@original`), with Discord's rate
 * limiting — a bucket per route and major parameter (the channel),
 * announced in `X-RateLimit-*` headers, plus the global per-bot limit — its 429 answers
 * (`retry_after` in the body, `Retry-After` header, `X-RateLimit-Global`/`-Scope`), token
 * checks, the validation errors a bot is most likely to hit (empty or too long content,
 * invalid JSON, a body too large), `enforce_nonce` de-duplication, injectable failures and
 * a recording of every request.
 *
 * One fake, several ways in, all over the same state (`handler`): a real HTTP server on
 * 127.0.0.1 (`make`: `url`, `apiBaseUrl`) for tests over sockets; `client`, an in-memory
 * `HttpClient`, for tests driven by `TestClock` (time is the `Clock` of the caller, so
 * windows follow the test clock); and `serve`, which `FakeGateway` answers these routes
 * with on its own server, next to `GET /gateway/bot`. Everything lives in the scope it was
 * made in.
 *
 * ```ts
 * const rest = yield* FakeRest.make({ token: "t", bucket: { requests: 5, window: "5 seconds" } })
 * yield* rest.failNext({ status: 429, retryAfter: "2 seconds" })
 * // point a client at rest.apiBaseUrl, or provide rest.client as its HttpClient
 * const posted = yield* rest.messages
 * ```
 */
import * as Http from "node:http"
import { Clock, Context, Duration, Effect, FiberSet, Layer, Predicate, type Scope } from "effect"
import { HttpClient, HttpClientError, HttpClientResponse } from "effect/http"
import { ListenError, listen } from "./internal/Listen.ts"
import * as Traffic from "./Traffic.ts"

export { ListenError }

export interface Config {
  /** The token every request must carry as `Authorization: Bot <token>` (else 401). */
  readonly token: string
  /** Each route's bucket per channel (posts; edits and deletes; reactions). Default 5 per 5 s, as Discord. */
  readonly bucket?: { readonly requests: number; readonly window: Duration.Input } | undefined
  /** Requests per bot across routes. Default 50 per second, as Discord. */
  readonly global?: { readonly requests: number; readonly window: Duration.Input } | undefined
  /** The bucket hash announced in `X-RateLimit-Bucket`. Default `"fake-messages"`. */
  readonly bucketHash?: string | undefined
  /** The bot: what `GET /users/@me` answers, and the author of the messages the fake creates. */
  readonly bot?: { readonly id: string; readonly username: string } | undefined
}

/** Why a request was answered 429, if it was. */
export type Limited = "bucket" | "global" | "injected"

/** One request as the fake saw it. */
export interface RequestRecord {
  /** Position in the recording (a total order; `at` has millisecond ties). */
  readonly index: number
  /** `Clock` time, epoch milliseconds. */
  readonly at: number
  readonly method: string
  /** The path without the `/api/v{n}` prefix. */
  readonly path: string
  readonly channelId: string | undefined
  readonly status: number
  readonly authorized: boolean
  readonly limited: Limited | undefined
  /** Whether an injected fault produced the answer. */
  readonly injected: boolean
  /** The bucket's `remaining` as announced in the answer (undefined when none was). */
  readonly remaining: number | undefined
  readonly content: string | undefined
  readonly nonce: string | undefined
  /** The JSON body as sent (undefined when there was none, or it was not JSON). */
  readonly body: unknown
  /** The audit log reason (`X-Audit-Log-Reason`), decoded. */
  readonly reason: string | undefined
  /** Where it came in: the HTTP server or the in-memory client. */
  readonly via: "http" | "memory"
}

/** A message the fake accepted. */
export interface PostedMessage {
  readonly id: string
  readonly channelId: string
  readonly content: string
  readonly nonce: string | undefined
  /** The JSON body as posted. */
  readonly body: unknown
  readonly at: number
}

export interface Reaction {
  readonly channelId: string
  readonly messageId: string
  readonly emoji: string
}

export interface InteractionResponse {
  readonly interactionId: string
  /** The callback's body: `{ type, data }`. */
  readonly body: unknown
}

export interface FailOptions {
  /** The status to answer with: 429, 401, 403, 404, 500, 502, 503… */
  readonly status: number
  /** How many requests get it. Default 1. */
  readonly count?: number | undefined
  /** Only posts to this channel. Default: any. */
  readonly channelId?: string | undefined
  /** For 429: the `retry_after`. Default 1 s. */
  readonly retryAfter?: Duration.Input | undefined
  /** For 429: a global limit (`X-RateLimit-Global: true`). Default false. */
  readonly global?: boolean | undefined
}

/** The fake without a server of its own: its state and the ways into it. */
export interface Handler {
  /**
   * Answers one request that came in on a `node:http` server (any path: unknown routes get
   * Discord's 404), on the `Clock` of the caller; the status it answered.
   */
  readonly serve: (req: Http.IncomingMessage, res: Http.ServerResponse) => Effect.Effect<number>
  /** An `HttpClient` that reaches the fake without a socket, on the caller's `Clock`. */
  readonly client: HttpClient.HttpClient
  /** The next requests get this answer instead (faults queue up in order). */
  readonly failNext: (options: FailOptions) => Effect.Effect<void>
  /** Every request so far, oldest first. */
  readonly requests: Effect.Effect<ReadonlyArray<RequestRecord>>
  /** Messages as they stand, oldest first: edits applied, deleted ones gone. */
  readonly messages: Effect.Effect<ReadonlyArray<PostedMessage>>
  /** Reactions the bot added, oldest first (`emoji` decoded: `"👍"` or `name:id`). */
  readonly reactions: Effect.Effect<ReadonlyArray<Reaction>>
  /** First answers to interactions, oldest first. */
  readonly interactionResponses: Effect.Effect<ReadonlyArray<InteractionResponse>>
}

export interface FakeRestService extends Omit<Handler, "serve"> {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  /** `http://127.0.0.1:<port>/api/v10`: what a client takes as its API base. */
  readonly apiBaseUrl: string
}

export class FakeRest extends Context.Service<FakeRest, FakeRestService>()("@vigil/testing/FakeRest") {
  static readonly layer = (config: Config): Layer.Layer<FakeRest, ListenError> => layer(config)
}

// ---------------------------------------------------------------------------
// The model: a request in, an answer out, no I/O.

interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: unknown
}

interface Window {
  resetAt: number
  used: number
}

interface Fault {
  readonly status: number
  readonly channelId: string | undefined
  readonly retryAfterMillis: number
  readonly global: boolean
  remaining: number
}

/** Larger bodies are refused with 413 rather than buffered. */
const maxBodyBytes = 1024 * 1024

const seconds = (ms: number) => (Math.max(0, ms) / 1000).toFixed(3)

const errorBodies: Readonly<Record<number, { readonly message: string; readonly code: number }>> = {
  401: { message: "401: Unauthorized", code: 0 },
  403: { message: "Missing Permissions", code: 50013 },
  404: { message: "Unknown Channel", code: 10003 },
}

const unknownMessage: Answer = { status: 404, headers: {}, body: { message: "Unknown Message", code: 10008 } }
const notFound: Answer = { status: 404, headers: {}, body: { message: "404: Not Found", code: 0 } }
const noContent = (headers: Readonly<Record<string, string>>): Answer => ({
  status: 204,
  headers,
  body: undefined,
})

/** What a path asks for: the routes the fake knows, with their parameters. */
type Target =
  | { readonly _tag: "Me" }
  | { readonly _tag: "Post"; readonly channelId: string }
  | { readonly _tag: "Message"; readonly channelId: string; readonly messageId: string }
  | { readonly _tag: "React"; readonly channelId: string; readonly messageId: string; readonly emoji: string }
  | { readonly _tag: "Callback"; readonly interactionId: string; readonly token: string }
  | { readonly _tag: "Original"; readonly applicationId: string; readonly token: string }

const routes: ReadonlyArray<{
  readonly method: ReadonlyArray<string>
  readonly pattern: RegExp
  readonly target: (p: ReadonlyArray<string>) => Target
}> = [
  { method: ["GET"], pattern: /^\/users\/@me$/, target: () => ({ _tag: "Me" }) },
  {
    method: ["POST"],
    pattern: /^\/channels\/(\d+)\/messages$/,
    target: (p) => ({ _tag: "Post", channelId: p[0]! }),
  },
  {
    method: ["PATCH", "DELETE"],
    pattern: /^\/channels\/(\d+)\/messages\/(\d+)$/,
    target: (p) => ({ _tag: "Message", channelId: p[0]!, messageId: p[1]! }),
  },
  {
    method: ["PUT"],
    pattern: /^\/channels\/(\d+)\/messages\/(\d+)\/reactions\/([^/]+)\/@me$/,
    target: (p) => ({ _tag: "React", channelId: p[0]!, messageId: p[1]!, emoji: decodeURIComponent(p[2]!) }),
  },
  {
    method: ["POST"],
    pattern: /^\/interactions\/(\d+)\/([^/]+)\/callback$/,
    target: (p) => ({ _tag: "Callback", interactionId: p[0]!, token: p[1]! }),
  },
  {
    method: ["PATCH"],
    pattern: /^\/webhooks\/(\d+)\/([^/]+)\/messages\/@original$/,
    target: (p) => ({ _tag: "Original", applicationId: p[0]!, token: p[1]! }),
  },
]

const routeOf = (method: string, path: string): Target | undefined => {
  for (const route of routes) {
    const match = route.method.includes(method) ? route.pattern.exec(path) : null
    if (match) return route.target(match.slice(1))
  }
  return undefined
}

const makeModel = (config: Config) => {
  const bucketLimit = config.bucket
    ? { requests: config.bucket.requests, windowMillis: Duration.toMillis(config.bucket.window) }
    : { requests: 5, windowMillis: 5_000 }
  const globalLimit = config.global
    ? { requests: config.global.requests, windowMillis: Duration.toMillis(config.global.window) }
    : { requests: 50, windowMillis: 1_000 }
  const hash = config.bucketHash ?? "fake-messages"
  const bot = config.bot ?? { id: "1000000000000000001", username: "vigil-fake-bot" }
  const buckets = new Map<string, Window>()
  const global: Window = { resetAt: 0, used: 0 }
  const faults: Array<Fault> = []
  const records: Array<RequestRecord> = []
  const messages: Array<PostedMessage> = []
  const byNonce = new Map<string, PostedMessage>()
  const reactions: Array<Reaction> = []
  const interactionResponses: Array<InteractionResponse> = []
  /** Interaction tokens answered, and the message each answer is (once edited). */
  const answered = new Map<string, PostedMessage | undefined>()
  /** A snowflake for the next message; a clock before Discord's epoch (TestClock's 0) counts as the epoch. */
  const messageId = (now: number) =>
    Traffic.snowflake(Math.max(now, Number(Traffic.discordEpoch)), nextMessage++)
  let nextMessage = 0

  const take = (window: Window, limit: { requests: number; windowMillis: number }, now: number) => {
    if (now >= window.resetAt) {
      window.resetAt = now + limit.windowMillis
      window.used = 0
    }
    if (window.used >= limit.requests) return { ok: false as const, retryAfter: window.resetAt - now }
    window.used++
    return { ok: true as const, remaining: limit.requests - window.used, resetAfter: window.resetAt - now }
  }

  const bucketHeaders = (remaining: number, resetAfter: number, now: number): Record<string, string> => ({
    "x-ratelimit-limit": String(bucketLimit.requests),
    "x-ratelimit-remaining": String(remaining),
    "x-ratelimit-reset": seconds(now + resetAfter),
    "x-ratelimit-reset-after": seconds(resetAfter),
    "x-ratelimit-bucket": hash,
  })

  const limited = (retryAfterMillis: number, global: boolean, headers: Record<string, string>): Answer => ({
    status: 429,
    headers: {
      ...headers,
      "retry-after": String(Math.ceil(retryAfterMillis / 1000)),
      "x-ratelimit-scope": global ? "global" : "user",
      ...(global ? { "x-ratelimit-global": "true" } : {}),
    },
    body: { message: "You are being rate limited.", retry_after: Number(seconds(retryAfterMillis)), global },
  })

  const userObject = {
    id: bot.id,
    username: bot.username,
    discriminator: "0",
    global_name: null,
    avatar: null,
    bot: true,
  }

  const messageObject = (message: PostedMessage, body: Record<string, unknown>) => ({
    id: message.id,
    channel_id: message.channelId,
    content: message.content,
    embeds: Array.isArray(body["embeds"]) ? body["embeds"] : [],
    author: userObject,
    timestamp: new Date(message.at).toISOString(),
    edited_timestamp: null,
    tts: false,
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: [],
    pinned: false,
    type: 0,
    ...(message.nonce !== undefined ? { nonce: message.nonce } : {}),
  })

  const handle = (
    request: {
      readonly method: string
      readonly path: string
      readonly authorization: string | undefined
      /** `X-Audit-Log-Reason`, URL-encoded as Discord wants it. */
      readonly reason?: string | undefined
      /** The body's text; undefined when it was larger than `maxBodyBytes`. */
      readonly body: string | undefined
    },
    now: number,
    via: RequestRecord["via"],
  ): Answer => {
    const path = request.path.replace(/^\/api(\/v\d+)?/, "").replace(/\/+$/, "")
    const target = routeOf(request.method, path)
    const channelId = target !== undefined && "channelId" in target ? target.channelId : undefined
    const authorized = request.authorization === `Bot ${config.token}`
    const body = parseJson(request.body)
    const fields = Predicate.isObject(body) ? (body as Record<string, unknown>) : {}
    const content = Predicate.isString(fields["content"]) ? fields["content"] : undefined
    const nonce = Predicate.isString(fields["nonce"]) ? fields["nonce"] : undefined
    let limitedBy: Limited | undefined
    let injected = false

    /** Content Discord refuses: none at all (no embeds either), or over 2000 characters. */
    const invalidContent = (headers: Record<string, string>, requireSome: boolean): Answer | undefined => {
      const embeds = Array.isArray(fields["embeds"]) ? fields["embeds"] : []
      const components = Array.isArray(fields["components"]) ? fields["components"] : []
      if (
        requireSome &&
        (content === undefined || content.length === 0) &&
        embeds.length + components.length === 0
      ) {
        return { status: 400, headers, body: { message: "Cannot send an empty message", code: 50006 } }
      }
      if (content !== undefined && content.length > 2000) {
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
      return undefined
    }

    const createMessage = (channel: string, headers: Record<string, string>): Answer => {
      const invalid = invalidContent(headers, true)
      if (invalid) return invalid
      // enforce_nonce: the same nonce within a few minutes returns the message already created.
      if (nonce !== undefined && fields["enforce_nonce"] === true) {
        const seen = byNonce.get(`${channel}:${nonce}`)
        if (seen !== undefined) {
          return { status: 200, headers, body: messageObject(seen, fields) }
        }
      }
      const message: PostedMessage = {
        id: messageId(now),
        channelId: channel,
        content: content ?? "",
        nonce,
        body,
        at: now,
      }
      messages.push(message)
      if (nonce !== undefined) byNonce.set(`${channel}:${nonce}`, message)
      return { status: 200, headers, body: messageObject(message, fields) }
    }

    /** Replaces a message by an edit of it (content and the body as last sent). */
    const edited = (message: PostedMessage): PostedMessage => ({
      ...message,
      content: content ?? message.content,
      body: { ...(Predicate.isObject(message.body) ? message.body : {}), ...fields },
    })

    const answer = ((): Answer => {
      if (target === undefined) return notFound
      const fault = faults.find((f) => f.channelId === undefined || f.channelId === channelId)
      if (fault !== undefined) {
        injected = true
        if (--fault.remaining <= 0) faults.splice(faults.indexOf(fault), 1)
        if (fault.status === 429) {
          limitedBy = "injected"
          return limited(fault.retryAfterMillis, fault.global, {})
        }
        return {
          status: fault.status,
          headers: {},
          body: errorBodies[fault.status] ?? { message: `${fault.status}: injected by the test`, code: 0 },
        }
      }
      // Interaction routes are authorized by the interaction token in the path, and are
      // outside the global limit (Discord's rules).
      const byInteraction = target._tag === "Callback" || target._tag === "Original"
      if (!byInteraction && !authorized) return { status: 401, headers: {}, body: errorBodies[401] }
      if (request.body === undefined) {
        return { status: 413, headers: {}, body: { message: "Request entity too large", code: 40005 } }
      }
      const needsBody =
        target._tag !== "Me" &&
        target._tag !== "React" &&
        !(target._tag === "Message" && request.method === "DELETE")
      if (needsBody && body === undefined) {
        return {
          status: 400,
          headers: {},
          body: { message: "The request body contains invalid JSON.", code: 50109 },
        }
      }
      if (byInteraction) {
        if (target._tag === "Callback") {
          if (answered.has(target.token)) {
            return {
              status: 400,
              headers: {},
              body: { message: "Interaction has already been acknowledged.", code: 40060 },
            }
          }
          answered.set(target.token, undefined)
          interactionResponses.push({ interactionId: target.interactionId, body })
          return noContent({})
        }
        if (!answered.has(target.token)) return unknownMessage
        const invalid = invalidContent({}, false)
        if (invalid) return invalid
        const before = answered.get(target.token) ?? {
          id: messageId(now),
          channelId: "0",
          content: "",
          nonce: undefined,
          body: {},
          at: now,
        }
        const after = edited(before)
        answered.set(target.token, after)
        return { status: 200, headers: {}, body: messageObject(after, fields) }
      }
      const globalTurn = take(global, globalLimit, now)
      if (!globalTurn.ok) {
        limitedBy = "global"
        return limited(globalTurn.retryAfter, true, {})
      }
      const channel = channelId ?? ""
      // A bucket per route and channel, as Discord's (posts, edits and deletes, reactions).
      const bucketKey = `${request.method} ${target._tag}:${channel}`
      const bucket = buckets.get(bucketKey) ?? { resetAt: 0, used: 0 }
      buckets.set(bucketKey, bucket)
      const turn = take(bucket, bucketLimit, now)
      if (!turn.ok) {
        limitedBy = "bucket"
        return limited(turn.retryAfter, false, bucketHeaders(0, turn.retryAfter, now))
      }
      const headers = bucketHeaders(turn.remaining, turn.resetAfter, now)
      if (target._tag === "Me") return { status: 200, headers, body: userObject }
      if (target._tag === "Post") return createMessage(channel, headers)
      const index = messages.findIndex((m) => m.id === target.messageId && m.channelId === channel)
      if (index < 0) return { ...unknownMessage, headers }
      if (target._tag === "React") {
        reactions.push({ channelId: channel, messageId: target.messageId, emoji: target.emoji })
        return noContent(headers)
      }
      if (request.method === "DELETE") {
        messages.splice(index, 1)
        return noContent(headers)
      }
      const invalid = invalidContent(headers, false)
      if (invalid) return invalid
      const after = edited(messages[index]!)
      messages[index] = after
      return { status: 200, headers, body: messageObject(after, fields) }
    })()

    const remaining = answer.headers["x-ratelimit-remaining"]
    const record: RequestRecord = {
      index: records.length,
      at: now,
      method: request.method,
      path,
      channelId,
      status: answer.status,
      authorized,
      limited: limitedBy,
      injected,
      remaining: remaining === undefined ? undefined : Number(remaining),
      content,
      nonce,
      body,
      reason: request.reason === undefined ? undefined : safeDecode(request.reason),
      via,
    }
    records.push(record)
    return answer
  }

  return {
    handle,
    failNext: (options: FailOptions) =>
      faults.push({
        status: options.status,
        channelId: options.channelId,
        retryAfterMillis: options.retryAfter === undefined ? 1_000 : Duration.toMillis(options.retryAfter),
        global: options.global ?? false,
        remaining: options.count ?? 1,
      }),
    records: () => records.slice(),
    messages: () => messages.slice(),
    reactions: () => reactions.slice(),
    interactionResponses: () => interactionResponses.slice(),
  }
}

// ---------------------------------------------------------------------------
// The ways in

const headerText = (value: string | ReadonlyArray<string> | undefined): string | undefined =>
  typeof value === "string" ? value : value?.[0]

/** A URL-encoded header value decoded; as it came when it is not valid encoding. */
const safeDecode = (text: string): string =>
  Effect.runSync(
    Effect.try({ try: () => decodeURIComponent(text), catch: () => "invalid" }).pipe(
      Effect.orElseSucceed(() => text),
    ),
  )

/** The parsed body, or undefined when it is not JSON (an empty body included). */
const parseJson = (text: string | undefined): unknown =>
  text === undefined || text.length === 0
    ? undefined
    : Effect.runSync(
        Effect.try({ try: (): unknown => JSON.parse(text), catch: () => "invalid" }).pipe(
          Effect.orElseSucceed(() => undefined),
        ),
      )

/** The request body, or undefined when it is too large (the rest is drained, unread). */
const readBody = (req: Http.IncomingMessage): Effect.Effect<string | undefined> =>
  Effect.callback<string | undefined>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBodyBytes) chunks.push(chunk)
    })
    req.on("end", () =>
      resume(Effect.succeed(size > maxBodyBytes ? undefined : Buffer.concat(chunks).toString("utf8"))),
    )
    req.on("error", () => resume(Effect.succeed("")))
  })

/** The fake's state and its ways in, without a server: `make` listens with it, `FakeGateway` serves it. */
export const handler = (config: Config): Handler => {
  const model = makeModel(config)

  const serve = (req: Http.IncomingMessage, res: Http.ServerResponse) =>
    Effect.gen(function* () {
      const body = yield* readBody(req)
      const now = yield* Clock.currentTimeMillis
      const answer = model.handle(
        {
          method: req.method ?? "GET",
          path: new URL(req.url ?? "/", "http://fake").pathname,
          authorization: req.headers.authorization,
          reason: headerText(req.headers["x-audit-log-reason"]),
          body,
        },
        now,
        "http",
      )
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers })
      res.end(answer.status === 204 ? undefined : JSON.stringify(answer.body))
      return answer.status
    })

  const client = HttpClient.make((request, requestUrl) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const body = request.body
      const bytes =
        body._tag === "Uint8Array"
          ? body.body
          : body._tag === "Raw" && Predicate.isString(body.body)
            ? new TextEncoder().encode(body.body)
            : new Uint8Array(0)
      const answer = model.handle(
        {
          method: request.method,
          path: requestUrl.pathname,
          authorization: request.headers["authorization"],
          reason: request.headers["x-audit-log-reason"],
          body: bytes.length > maxBodyBytes ? undefined : new TextDecoder().decode(bytes),
        },
        now,
        "memory",
      )
      return HttpClientResponse.fromWeb(
        request,
        new Response(answer.status === 204 ? null : JSON.stringify(answer.body), {
          status: answer.status,
          headers: { "content-type": "application/json", ...answer.headers },
        }),
      )
    }).pipe(
      Effect.catchDefect((cause) =>
        Effect.fail(
          new HttpClientError.HttpClientError({
            reason: new HttpClientError.TransportError({ request, cause, description: "FakeRest client" }),
          }),
        ),
      ),
    ),
  )

  return {
    serve,
    client,
    failNext: (options) => Effect.sync(() => model.failNext(options)),
    requests: Effect.sync(() => model.records()),
    messages: Effect.sync(() => model.messages()),
    reactions: Effect.sync(() => model.reactions()),
    interactionResponses: Effect.sync(() => model.interactionResponses()),
  }
}

/** The fake on its own HTTP server on 127.0.0.1, closed with the scope. */
export const make = (config: Config): Effect.Effect<FakeRestService, ListenError, Scope.Scope> =>
  Effect.gen(function* () {
    const { serve, ...fake } = handler(config)
    const runFork = yield* FiberSet.makeRuntime<never>()
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => Http.createServer((req, res) => runFork(serve(req, res)))),
      (server) =>
        Effect.callback<void>((resume) => {
          if (!server.listening) return resume(Effect.void)
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        }),
    )
    const port = yield* listen(server, "FakeRest", 0)
    const url = `http://127.0.0.1:${port}`
    return { ...fake, url, apiBaseUrl: `${url}/api/v10` } satisfies FakeRestService
  })

export const layer = (config: Config): Layer.Layer<FakeRest, ListenError> =>
  Layer.effect(FakeRest)(make(config))

/** The fake's in-memory `HttpClient` as a layer (needs `FakeRest`). */
export const layerClient: Layer.Layer<HttpClient.HttpClient, never, FakeRest> = Layer.effect(
  HttpClient.HttpClient,
)(
  Effect.gen(function* () {
    return (yield* FakeRest).client
  }),
)
