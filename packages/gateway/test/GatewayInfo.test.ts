/**
 * `GET /gateway/bot` against a stub HttpClient: what each answer becomes, by type, and that
 * every error names the URL requested (never the token).
 */
import { assert, describe, it } from "@effect/vitest"
import { GatewayInfo } from "@vigil/gateway"
import { Effect, Redacted } from "effect"
import { HttpClient, HttpClientError, HttpClientResponse } from "effect/http"

const token = Redacted.make("gateway-info-SECRET-token")
const base = "http://127.0.0.1:9/api/v10"

/** A client that answers every request with `status` and records the URLs asked for. */
const answering = (status: number | "unreachable", urls: Array<string> = []) =>
  HttpClient.make((request) => {
    urls.push(request.url)
    return status === "unreachable"
      ? Effect.fail(
          new HttpClientError.HttpClientError({
            reason: new HttpClientError.TransportError({ request, description: "refused" }),
          }),
        )
      : Effect.succeed(HttpClientResponse.fromWeb(request, Response.json({}, { status })))
  })

const fetchWith = (client: HttpClient.HttpClient, apiBaseUrl = base) =>
  GatewayInfo.fetchGatewayBot({ token, apiBaseUrl }).pipe(
    Effect.provideService(HttpClient.HttpClient, client),
    Effect.flip,
  )

describe("GatewayInfo.fetchGatewayBot", () => {
  it.effect("401: the token was refused, as the gateway's AuthenticationFailed (one catchTag for both)", () =>
    Effect.gen(function* () {
      const error = yield* fetchWith(answering(401))
      assert.strictEqual(error._tag, "AuthenticationFailed")
      if (error._tag === "AuthenticationFailed") assert.strictEqual(error.code, 401)
      assert.include(error.message, "401")
      assert.notInclude(`${error.message} ${JSON.stringify(error)}`, "SECRET")
      const handled = yield* GatewayInfo.fetchGatewayBot({ token, apiBaseUrl: base }).pipe(
        Effect.as("connected"),
        Effect.catchTag("AuthenticationFailed", () => Effect.succeed("bad token")),
        Effect.catchTag("GatewayInfoError", () => Effect.succeed("other")),
        Effect.provideService(HttpClient.HttpClient, answering(401)),
      )
      assert.strictEqual(handled, "bad token")
    }),
  )

  it.effect("errors show the URL requested; a 404 says the base must include /api/vN", () =>
    Effect.gen(function* () {
      const urls: Array<string> = []
      const error = yield* fetchWith(answering(404, urls), "http://127.0.0.1:9/")
      assert.deepStrictEqual(urls, ["http://127.0.0.1:9/gateway/bot"])
      assert.strictEqual(error._tag, "GatewayInfoError")
      assert.include(error.message, "GET http://127.0.0.1:9/gateway/bot failed (404)")
      assert.include(error.message, "/api/v10")
      if (error._tag === "GatewayInfoError") assert.isFalse(GatewayInfo.isTransient(error))
    }),
  )

  it.effect("a malformed base is reported as such, not as unreachable, and nothing is requested", () =>
    Effect.gen(function* () {
      for (const bad of ["localhost:3000/api/v10", "not a url", "ftp://example.com/api/v10"]) {
        const urls: Array<string> = []
        const error = yield* fetchWith(answering(200, urls), bad)
        assert.strictEqual(error._tag, "GatewayInfoError")
        assert.include(error.message, "not an http(s) URL", bad)
        assert.notInclude(error.message, "could not be reached")
        assert.include(error.message, bad)
        assert.deepStrictEqual(urls, [])
        if (error._tag === "GatewayInfoError") assert.isFalse(GatewayInfo.isTransient(error))
      }
    }),
  )

  it.effect("no answer and 5xx are transient (worth retrying); the URL is in the message", () =>
    Effect.gen(function* () {
      for (const status of ["unreachable", 502] as const) {
        const error = yield* fetchWith(answering(status))
        assert.strictEqual(error._tag, "GatewayInfoError")
        if (error._tag === "GatewayInfoError") assert.isTrue(GatewayInfo.isTransient(error), String(status))
        assert.include(error.message, `${base}/gateway/bot`)
      }
      // The client's own report survives: why there was no answer, not only that there was none.
      const unreachable = yield* fetchWith(answering("unreachable"))
      assert.include(unreachable.message, "refused")
      assert.notInclude(`${unreachable.message} ${JSON.stringify(unreachable)}`, "SECRET")
    }),
  )
})
