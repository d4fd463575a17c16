/**
 * `GET /gateway/bot`: where to connect, how many shards Discord recommends, and the
 * identify budget (`session_start_limit`). The API base is configurable so tests point it
 * at a local server.
 */
import { Duration, Effect, Redacted, Schema } from "effect"
import { HttpClient, HttpClientRequest, HttpClientResponse } from "effect/http"
import { AuthenticationFailed } from "./GatewayError.ts"

export const defaultApiBaseUrl = "https://discord.com/api/v10"

export const GatewayBot = Schema.Struct({
  url: Schema.String,
  shards: Schema.Int.check(Schema.isGreaterThan(0)),
  session_start_limit: Schema.Struct({
    total: Schema.Int,
    remaining: Schema.Int,
    reset_after: Schema.Number,
    max_concurrency: Schema.Int.check(Schema.isGreaterThan(0)),
  }),
})
export type GatewayBot = typeof GatewayBot.Type

export class GatewayInfoError extends Schema.TaggedError<GatewayInfoError>()("GatewayInfoError", {
  /** The URL requested (never carries the token). */
  url: Schema.String,
  /** HTTP status, when the server answered. */
  status: Schema.optional(Schema.Int),
  detail: Schema.String,
  /** What the HTTP client reported, when no answer came (refused, timed out, DNS…). */
  reason: Schema.optional(Schema.String),
}) {
  override get message() {
    const status = this.status !== undefined ? ` (${this.status})` : ""
    return `GET ${this.url} failed${status}: ${this.detail}${this.reason !== undefined ? ` (${this.reason})` : ""}`
  }
}

const unreachable = "the API could not be reached"

/** Whether trying again later may help: no answer, or a 5xx (a bad URL or token never gets better). */
export const isTransient = (error: GatewayInfoError): boolean =>
  error.status === undefined ? error.detail === unreachable : error.status >= 500

/**
 * The innermost message of an error's `cause` chain: for a refused fetch, "connect
 * ECONNREFUSED 127.0.0.1:9" rather than the client's "Transport error (GET …)".
 */
const rootMessage = (error: { readonly message: string }): string => {
  let message = error.message
  let cause: unknown = (error as { reason?: { cause?: unknown } }).reason?.cause
  for (let depth = 0; depth < 5 && cause instanceof Error; depth++) {
    message = cause.message
    cause = cause.cause
  }
  return message
}

/** `base` is an absolute http(s) URL; anything else would be reported as unreachable. */
const isHttpUrl = (base: string) => /^https?:\/\/[^/\s?#]+/i.test(base)

/**
 * A refused token fails as the gateway's `AuthenticationFailed` (code 401 instead of 4004),
 * so one `catchTag` handles a bad token wherever Discord notices it first.
 */
export const fetchGatewayBot = (options: {
  readonly token: Redacted.Redacted<string>
  readonly apiBaseUrl?: string | undefined
  readonly timeout?: Duration.Input | undefined
}): Effect.Effect<GatewayBot, GatewayInfoError | AuthenticationFailed, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const base = (options.apiBaseUrl ?? defaultApiBaseUrl).replace(/\/+$/, "")
    const url = `${base}/gateway/bot`
    if (!isHttpUrl(base)) {
      return yield* new GatewayInfoError({ url, detail: "the API base is not an http(s) URL" })
    }
    const client = yield* HttpClient.HttpClient
    const request = HttpClientRequest.get(url).pipe(
      // The header is redacted in traces by Effect's HttpClient (authorization is a redacted name).
      HttpClientRequest.setHeader("authorization", `Bot ${Redacted.value(options.token)}`),
      HttpClientRequest.acceptJson,
    )
    const response = yield* client.execute(request).pipe(
      Effect.timeout(options.timeout ?? Duration.seconds(15)),
      Effect.mapError(
        (error) =>
          new GatewayInfoError({
            url,
            detail:
              error._tag === "HttpClientError" && error.reason._tag === "InvalidUrlError"
                ? "the API base is not a valid URL"
                : unreachable,
            reason: rootMessage(error),
          }),
      ),
    )
    if (response.status === 401) {
      return yield* new AuthenticationFailed({ code: 401, reason: `GET ${url} refused the token` })
    }
    if (response.status === 404) {
      return yield* new GatewayInfoError({
        url,
        status: 404,
        detail: "not found (the API base must include the version, e.g. …/api/v10)",
      })
    }
    if (response.status < 200 || response.status >= 300) {
      return yield* new GatewayInfoError({ url, status: response.status, detail: "unexpected status" })
    }
    return yield* HttpClientResponse.schemaBodyJson(GatewayBot)(response).pipe(
      Effect.mapError(
        () => new GatewayInfoError({ url, status: response.status, detail: "unexpected response body" }),
      ),
    )
  })
