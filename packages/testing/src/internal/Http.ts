/**
 * The REST side of the fake: `GET /gateway` and `GET /gateway/bot` (what a gateway client
 * asks before it connects), with or without the `/api/v{n}` prefix, answered like Discord,
 * including the 401 for a missing or wrong `Authorization: Bot <token>`. Every other route
 * (`GET /users/@me`, `POST /channels/{id}/messages`, and the 404s) is `FakeRest`'s.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { Clock, Effect } from "effect"
import type { State } from "./State.ts"

const send = (res: ServerResponse, status: number, body: unknown): number => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
  return status
}

const route = (state: State, req: IncomingMessage, res: ServerResponse): Effect.Effect<number> =>
  Effect.gen(function* () {
    const path = new URL(req.url ?? "/", "http://fake").pathname
      .replace(/^\/api(\/v\d+)?/, "")
      .replace(/\/+$/, "")
    const method = req.method ?? "GET"
    if (method === "GET" && path === "/gateway") return send(res, 200, { url: state.publicUrl() })
    if (method !== "GET" || path !== "/gateway/bot") return yield* state.rest.serve(req, res)
    if (req.headers.authorization !== `Bot ${state.config.token}`) {
      return send(res, 401, { message: "401: Unauthorized", code: 0 })
    }
    return send(res, 200, {
      url: state.publicUrl(),
      shards: state.recommendedShards(),
      session_start_limit: state.sessionStartLimit(yield* Clock.currentTimeMillis),
    })
  })

export const handle = (state: State, req: IncomingMessage, res: ServerResponse): Effect.Effect<void> =>
  Effect.gen(function* () {
    const status = yield* route(state, req, res)
    yield* state.record({ _tag: "Http", method: req.method ?? "GET", path: req.url ?? "/", status })
  })
