/**
 * The app's `/health` on a real loopback port: the provider's verdict as 200 or 503, with
 * its snapshot as JSON; 503 `starting` until the command hands its provider over.
 */
import { type AddressInfo, createServer } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import type { Health } from "@vigil/provider"
import { Effect, Layer } from "effect"
import * as Observability from "../src/Observability.ts"

const freePort = Effect.callback<number>((resume) => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const snapshot = (state: Health.ProviderState, ready: boolean): Health.ProviderHealth => ({
  at: 0,
  state,
  generation: 1,
  ready,
  botUser: undefined,
  fatal: undefined,
  startError: undefined,
  shards: [],
  inbound: { messages: 0, malformed: 0, ownSkipped: 0 },
  outbound: { sent: 0, failed: {}, requests: 0, rateLimited: 0, retries: 0 },
})

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, body: (await response.json()) as { status: string; state?: string } }
  })

describe("the app's /health", () => {
  it.live("answers the provider's verdict: 503 starting, 200 up, 503 down, with the snapshot", () =>
    Effect.gen(function* () {
      const port = yield* freePort
      let current = snapshot("Running", true)
      yield* Effect.gen(function* () {
        const url = `http://127.0.0.1:${port}/health`
        const before = yield* get(url)
        assert.deepStrictEqual([before.status, before.body.status], [503, "starting"])
        yield* Observability.serveHealth({ health: Effect.sync(() => current) })
        const up = yield* get(url)
        assert.deepStrictEqual([up.status, up.body.status, up.body.state], [200, "up", "Running"])
        current = snapshot("Running", false) // a shard reconnecting: degraded, still serving
        assert.strictEqual((yield* get(url)).status, 200)
        current = snapshot("Stopped", false)
        const down = yield* get(url)
        assert.deepStrictEqual([down.status, down.body.status, down.body.state], [503, "down", "Stopped"])
      }).pipe(Effect.provide(Layer.fresh(Observability.layer({ metricsPort: port, metricsHost: undefined }))))
    }),
  )
})
