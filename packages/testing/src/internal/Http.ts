/**
 * The REST side a gateway client needs before it connects: `GET /gateway` and
 * `GET /gateway/bot` (with or without the `/api/v{n}` prefix), answered like Discord,
 * including the 401 for a missing or wrong `Authorization: Bot <token>`.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { Clock, Effect } from "effect"
import type { State } from "./State.ts"

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
}

export const handle = (state: State, req: IncomingMessage, res: ServerResponse): Effect.Effect<void> =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const path = new URL(req.url ?? "/", "http://fake").pathname
      .replace(/^\/api(\/v\d+)?/, "")
      .replace(/\/+$/, "")
    const method = req.method ?? "GET"
    let status = 200
    if (method !== "GET" || (path !== "/gateway" && path !== "/gateway/bot")) {
      status = 404
      json(res, status, { message: "404: Not Found", code: 0 })
    } else if (path === "/gateway") {
      json(res, status, { url: state.publicUrl() })
    } else if (req.headers.authorization !== `Bot ${state.config.token}`) {
      status = 401
      json(res, status, { message: "401: Unauthorized", code: 0 })
    } else {
      json(res, status, {
        url: state.publicUrl(),
        shards: state.config.shards,
        session_start_limit: state.sessionStartLimit(now),
      })
    }
    yield* state.record({ _tag: "Http", method, path: req.url ?? "/", status })
  })
