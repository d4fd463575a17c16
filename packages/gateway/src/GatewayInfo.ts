/**
 * `GET /gateway/bot`: where to connect, how many shards Discord recommends, and the
 * identify budget (`session_start_limit`). The API base is configurable so tests point it
 * at a local server.
 */
import { Duration, Effect, Redacted, Schema } from "effect"
import { HttpClient, HttpClientRequest, HttpClientResponse } from "effect/http"

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
  /** HTTP status, when the server answered. */
  status: Schema.optional(Schema.Int),
  detail: Schema.String,
}) {
  override get message() {
    return `GET /gateway/bot failed${this.status !== undefined ? ` (${this.status})` : ""}: ${this.detail}`
  }
}

export const fetchGatewayBot = (options: {
  readonly token: Redacted.Redacted<string>
  readonly apiBaseUrl?: string | undefined
  readonly timeout?: Duration.Input | undefined
}): Effect.Effect<GatewayBot, GatewayInfoError, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const request = HttpClientRequest.get(`${options.apiBaseUrl ?? defaultApiBaseUrl}/gateway/bot`).pipe(
      // The header is redacted in traces by Effect's HttpClient (authorization is a redacted name).
      HttpClientRequest.setHeader("authorization", `Bot ${Redacted.value(options.token)}`),
      HttpClientRequest.acceptJson,
    )
    const response = yield* client.execute(request).pipe(
      Effect.timeout(options.timeout ?? Duration.seconds(15)),
      Effect.mapError(() => new GatewayInfoError({ detail: "the API could not be reached" })),
    )
    if (response.status === 401) {
      return yield* new GatewayInfoError({ status: 401, detail: "the token was refused" })
    }
    if (response.status < 200 || response.status >= 300) {
      return yield* new GatewayInfoError({ status: response.status, detail: "unexpected status" })
    }
    return yield* HttpClientResponse.schemaBodyJson(GatewayBot)(response).pipe(
      Effect.mapError(
        () => new GatewayInfoError({ status: response.status, detail: "unexpected response body" }),
      ),
    )
  })
