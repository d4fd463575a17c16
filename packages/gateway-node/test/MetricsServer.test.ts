/**
 * The operator's endpoint on a real loopback socket: `/metrics` serves Vigil's series in
 * Prometheus text that Prometheus's own `promtool check metrics` accepts, and `/health`
 * answers 200 or 503 from the app's verdict.
 */
import { spawnSync } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { GatewayError, Metrics, Protocol } from "@vigil/gateway"
import { MetricsServer } from "@vigil/gateway-node"
import { Effect, Layer, Ref } from "effect"
import { HttpServer } from "effect/http"

const promtool = spawnSync("promtool", ["--version"]).status === 0
if (!promtool) {
  console.warn(
    "MetricsServer.test: promtool absent (Debian package `prometheus`): the format check is skipped",
  )
}

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      body: await response.text(),
    }
  })

/** A shard's recorder after a zombie → resume and a close with 4000. */
const recorded = Effect.gen(function* () {
  const metrics = yield* Metrics.forShard(7, { sequence: () => 42, queueDepth: () => 3 })
  metrics.connection()
  metrics.state("Ready")
  metrics.identified()
  metrics.dispatched([
    Protocol.makeDispatch(1, "READY", {}),
    Protocol.makeDispatch(2, "MESSAGE_CREATE", {}),
    Protocol.makeDispatch(3, "MESSAGE_CREATE", {}),
  ])
  metrics.latency(40)
  metrics.ended(
    new GatewayError.ZombieDetected({
      shard: [7, 8],
      intervalMillis: 41_250,
      lastAckAt: null,
      waitedMillis: 41_250,
    }),
  )
  metrics.connection()
  metrics.resumed()
  metrics.ended(GatewayError.ServerClosed.fromCode(4000, 'quote " and \\ backslash'))
})

const serve = (health: MetricsServer.MetricsServerOptions["health"]) =>
  Effect.gen(function* () {
    const server = yield* Layer.build(MetricsServer.layer({ port: 0, health }))
    const address = server.mapUnsafe.get(HttpServer.HttpServer.key) as HttpServer.HttpServer["Service"]
    const { port } = address.address as { port: number }
    assert.isAbove(port, 0)
    return `http://127.0.0.1:${port}`
  })

describe("MetricsServer", () => {
  it.live("serves Vigil's series as Prometheus text, accepted by promtool", () =>
    Effect.gen(function* () {
      yield* recorded
      const base = yield* serve(undefined)
      const { status, type, body } = yield* get(`${base}/metrics`)
      assert.strictEqual(status, 200)
      assert.include(type ?? "", "text/plain")
      for (const line of [
        'vigil_zombies_total{shard="7"} 1',
        'vigil_resumes_total{shard="7"} 1',
        'vigil_closes_total{shard="7",code="4000"} 1',
        'vigil_events_total{shard="7",type="MESSAGE_CREATE"} 2',
        'vigil_shard_state{shard="7",state="Ready"} 1',
        'vigil_shard_sequence{shard="7"} 42',
        'vigil_shard_queue_depth{shard="7"} 3',
        'vigil_heartbeat_rtt_seconds_count{shard="7"} 1',
      ]) {
        assert.include(body, line)
      }
      if (promtool) {
        const check = spawnSync("promtool", ["check", "metrics"], { input: body, encoding: "utf8" })
        // Exit 0: valid; lint findings alone (e.g. naming advice) would exit 3 with text.
        assert.strictEqual(check.status, 0, `${check.stdout}${check.stderr}`)
      }
    }),
  )

  it.live("/health is 200 or 503 with the verdict's JSON; other paths are 404", () =>
    Effect.gen(function* () {
      const healthy = yield* Ref.make(true)
      const base = yield* serve(
        Effect.map(Ref.get(healthy), (ok) => ({
          healthy: ok,
          body: { shards: ok ? "ready" : "reconnecting" },
        })),
      )
      const up = yield* get(`${base}/health`)
      assert.strictEqual(up.status, 200)
      assert.deepStrictEqual(JSON.parse(up.body), { shards: "ready" })
      yield* Ref.set(healthy, false)
      const down = yield* get(`${base}/health`)
      assert.strictEqual(down.status, 503)
      assert.deepStrictEqual(JSON.parse(down.body), { shards: "reconnecting" })
      assert.strictEqual((yield* get(`${base}/other`)).status, 404)
    }),
  )
})
