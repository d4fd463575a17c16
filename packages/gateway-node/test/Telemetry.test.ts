/**
 * OTLP export as an operator turns it on (`OTEL_EXPORTER_OTLP_ENDPOINT`): a receiver on
 * 127.0.0.1 captures what the exporter sends (JSON) for a zombie → resume driven by
 * TestClock; the lifecycle spans and their attributes are there, no span per event, and the
 * token in nothing that left the process.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, SessionStore, Shard } from "@vigil/gateway"
import * as ScriptedGateway from "@vigil/gateway/testing/ScriptedGateway"
import * as Settle from "@vigil/gateway/testing/Settle"
import { Telemetry } from "@vigil/gateway-node"
import { ConfigProvider, Effect, Layer, Random, Redacted, References, Stream } from "effect"

const interval = 41_250
const jitter = 0.5
const secret = "otlp-test-secret-token-7"

/** An OTLP/HTTP receiver: every request body, by path. */
const receiver = Effect.acquireRelease(
  Effect.callback<{ url: string; bodies: Map<string, Array<string>>; server: Server }>((resume) => {
    const bodies = new Map<string, Array<string>>()
    const server = createServer((request, response) => {
      let body = ""
      request.on("data", (chunk) => {
        body += chunk
      })
      request.on("end", () => {
        const path = request.url ?? ""
        bodies.set(path, [...(bodies.get(path) ?? []), body])
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, bodies, server }))
    })
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((done) => server.close(() => done()))),
)

interface OtlpSpan {
  readonly name: string
  readonly attributes: ReadonlyArray<{ key: string; value: Record<string, unknown> }>
}

const spansOf = (bodies: ReadonlyArray<string>): Array<OtlpSpan> =>
  bodies.flatMap((body) =>
    JSON.parse(body).resourceSpans.flatMap((r: { scopeSpans: Array<{ spans: Array<OtlpSpan> }> }) =>
      r.scopeSpans.flatMap((s) => s.spans),
    ),
  )

const attribute = (span: OtlpSpan, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value
  return value === undefined ? undefined : Object.values(value)[0]
}

const scenario = Effect.gen(function* () {
  const server = yield* ScriptedGateway.ScriptedGateway
  const shard = yield* Shard.make({
    token: Redacted.make(secret),
    intents: 1,
    shard: [0, 1],
    gatewayUrl: "memory://gateway",
  })
  yield* Effect.forkChild(Stream.runDrain(shard.events))
  yield* Settle.settle
  yield* server.emitMessages(30)
  yield* server.stopAcks()
  yield* Settle.advance(interval * jitter)
  yield* Settle.advance(interval) // zombie
  yield* server.resumeAcks()
  yield* Settle.settle
  yield* server.emitMessages(10, 0, 31)
  yield* Settle.settle
})

describe("Telemetry.layerOtlp", () => {
  it.effect("exports the lifecycle spans of a zombie → resume to the OTLP endpoint, the token nowhere", () =>
    Effect.gen(function* () {
      const { url, bodies } = yield* receiver
      const otlp = Telemetry.layerOtlp().pipe(
        Layer.provide(
          ConfigProvider.layer(ConfigProvider.fromEnvRecord({ OTEL_EXPORTER_OTLP_ENDPOINT: url })),
        ),
      )
      const env = Layer.mergeAll(
        ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
        SessionStore.SessionStore.layerMemory,
        IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
        Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => jitter, nextIntUnsafe: () => 0 }),
      )
      // The exporter flushes when its layer's scope closes: at the end of this `provide`. Every
      // log level, so that the debug lines are exported (and checked for the token) too.
      yield* Effect.scoped(scenario).pipe(
        Effect.provide(env),
        Effect.provide(otlp),
        Effect.provideService(References.MinimumLogLevel, "All"),
      )

      console.log(
        "DEBUG",
        [...bodies.keys()],
        [...bodies.values()].map((b) => b.length),
      )
      const spans = spansOf(bodies.get("/v1/traces") ?? [])
      const names = spans.map((s) => s.name)
      const connections = spans.filter((s) => s.name === "vigil.connection")
      assert.strictEqual(connections.length, 2, names.join(", "))
      const [first, second] = [...connections].sort(
        (a, b) => Number(attribute(a, "vigil.attempt")) - Number(attribute(b, "vigil.attempt")),
      )
      assert.strictEqual(attribute(first!, "vigil.handshake"), "identify")
      assert.strictEqual(attribute(first!, "vigil.outcome"), "ZombieDetected")
      assert.strictEqual(attribute(second!, "vigil.handshake"), "resume")
      assert.strictEqual(attribute(second!, "vigil.session.id"), "session-0-1")
      assert.include(names, "vigil.connect")
      assert.include(names, "vigil.handshake")
      // 40 dispatches and a dozen heartbeats: none of them a span.
      assert.isBelow(spans.length, 10, names.join(", "))
      for (const name of names) assert.match(name, /^vigil\./)

      const everything = [...bodies.values()].flat().join("\n")
      assert.include(everything, "connection to memory://gateway ended", "the logs were exported")
      assert.notInclude(everything, secret)
    }),
  )
})
