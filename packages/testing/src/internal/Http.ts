/**
 * The REST side of the fake: `GET /gateway` and `GET /gateway/bot` (what a gateway client
 * asks before it connects) and `POST /channels/{id}/messages` (see `Rest.ts`), with or
 * without the `/api/v{n}` prefix, answered like Discord, including the 401 for a missing or
 * wrong `Authorization: Bot <token>`.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { Clock, Effect } from "effect"
import type { State } from "./State.ts"

/** Larger bodies are refused with 413 rather than buffered. */
const maxBodyBytes = 1024 * 1024

const send = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

/** The request body, or undefined when it is too large (the rest is drained, unread). */
const readBody = (req: IncomingMessage): Effect.Effect<Buffer | undefined> =>
  Effect.callback<Buffer | undefined>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBodyBytes) chunks.push(chunk)
    })
    req.on("end", () => resume(Effect.succeed(size > maxBodyBytes ? undefined : Buffer.concat(chunks))))
    req.on("error", () => resume(Effect.succeed(undefined)))
  })

const notFound = { message: "404: Not Found", code: 0 }

const route = (state: State, req: IncomingMessage, res: ServerResponse, now: number): Effect.Effect<number> =>
  Effect.gen(function* () {
    const path = new URL(req.url ?? "/", "http://fake").pathname
      .replace(/^\/api(\/v\d+)?/, "")
      .replace(/\/+$/, "")
    const method = req.method ?? "GET"
    const authorized = req.headers.authorization === `Bot ${state.config.token}`
    if (method === "GET" && path === "/gateway") {
      send(res, 200, { url: state.publicUrl() })
      return 200
    }
    const channel = /^\/channels\/(\d+)\/messages$/.exec(path)?.[1]
    const known =
      (method === "GET" && path === "/gateway/bot") || (method === "POST" && channel !== undefined)
    if (!known) {
      send(res, 404, notFound)
      return 404
    }
    if (!authorized) {
      send(res, 401, { message: "401: Unauthorized", code: 0 })
      return 401
    }
    if (channel === undefined) {
      send(res, 200, {
        url: state.publicUrl(),
        shards: state.config.shards,
        session_start_limit: state.sessionStartLimit(now),
      })
      return 200
    }
    const raw = yield* readBody(req)
    if (raw === undefined) {
      send(res, 413, { message: "Request entity too large", code: 40005 })
      return 413
    }
    const body = yield* Effect.try({
      try: (): unknown => JSON.parse(raw.toString("utf8")),
      catch: () => "invalid",
    }).pipe(Effect.orElseSucceed(() => undefined))
    if (body === undefined) {
      send(res, 400, { message: "The request body contains invalid JSON.", code: 50109 })
      return 400
    }
    const answer = state.rest.postMessage(channel, body, now)
    send(res, answer.status, answer.body, answer.headers)
    return answer.status
  })

export const handle = (state: State, req: IncomingMessage, res: ServerResponse): Effect.Effect<void> =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const status = yield* route(state, req, res, now)
    yield* state.record({ _tag: "Http", method: req.method ?? "GET", path: req.url ?? "/", status })
  })
