/**
 * The shard's traces and logs, captured whole under TestClock: lifecycle spans only (never
 * one per event), logs annotated with shard, session and attempt, a fatal stop left to the
 * app, and the token nowhere — even when the server echoes it in a close reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, SessionStore, Shard } from "@vigil/gateway"
import * as ScriptedGateway from "@vigil/gateway/testing/ScriptedGateway"
import * as Settle from "@vigil/gateway/testing/Settle"
import { Effect, Exit, Layer, Logger, Option, Random, Redacted, References, Stream, Tracer } from "effect"

const interval = 41_250
const jitter = 0.5
// Not shaped like a Discord token: only the echo redaction (the secret itself) can catch it.
const secret = "observability-secret-token-42"

const captured = (throttle: IdentifyThrottle.IdentifyThrottleOptions = { maxConcurrency: 1 }) => {
  const spans: Array<Tracer.Span> = []
  const lines: Array<string> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = Tracer.nativeTracer.span(options)
      spans.push(span)
      return span
    },
  })
  const logger = Logger.map(Logger.formatJson, (line) => {
    lines.push(line)
  })
  const layer = Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
    SessionStore.SessionStore.layerMemory,
    IdentifyThrottle.IdentifyThrottle.layer(throttle),
    Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => jitter, nextIntUnsafe: () => 0 }),
    Layer.succeed(Tracer.Tracer)(tracer),
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel)("All"),
  )
  return { spans, lines, layer }
}

/** Everything a span carries, as text to grep. */
const spanText = (span: Tracer.Span) =>
  JSON.stringify({ name: span.name, attributes: [...span.attributes], status: span.status }, (_, v) =>
    typeof v === "bigint" ? String(v) : v instanceof Error ? { ...v, message: v.message } : v,
  )

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
  yield* server.emitMessages(20)
  // Zombie → resume.
  yield* server.stopAcks()
  yield* Settle.advance(interval * jitter)
  yield* Settle.advance(interval)
  yield* server.resumeAcks()
  yield* Settle.settle
  yield* server.emitMessages(5, 0, 21)
  yield* Settle.advance(10_000)
  // The server echoes the token in a close reason, first resumable, then fatal.
  yield* server.peer()!.close(4000, `bad frame from ${secret}`)
  yield* Settle.settle
  // At once again: a connection that never proved healthy, so the next one backs off.
  yield* server.peer()!.close(4000, "again")
  yield* Settle.advance(10_000)
  yield* server.peer()!.close(4004, `token ${secret} rejected`)
  yield* Settle.advance(10_000)
  return yield* Effect.exit(shard.await)
})

describe("Telemetry", () => {
  it.effect("lifecycle spans for a zombie → resume, none per event, the token in no span or log", () => {
    const { spans, lines, layer } = captured()
    return Effect.gen(function* () {
      const exit = yield* scenario
      assert.isTrue(Exit.isFailure(exit), "4004 stops the shard")

      const names = spans.map((s) => s.name)
      const connections = spans.filter((s) => s.name === "vigil.connection")
      assert.strictEqual(connections.length, 4)
      // 25 dispatches went through: not one span each.
      assert.isBelow(spans.length, 15, names.join(", "))
      assert.deepStrictEqual(
        connections.map((s) => [s.attributes.get("vigil.handshake"), s.attributes.get("vigil.outcome")]),
        [
          ["identify", "ZombieDetected"],
          ["resume", "ServerClosed"],
          ["resume", "ServerClosed"],
          ["resume", "AuthenticationFailed"],
        ],
      )
      assert.strictEqual(connections[1]!.attributes.get("vigil.close.code"), 4000)
      assert.include(
        String(connections[1]!.attributes.get("vigil.close.reason")),
        "bad frame from [redacted]",
      )
      assert.strictEqual(connections[0]!.attributes.get("vigil.attempt"), 1)
      assert.strictEqual(connections[1]!.attributes.get("vigil.session.id"), "session-0-1")
      assert.include(names, "vigil.connect")
      assert.include(names, "vigil.handshake")
      assert.include(names, "vigil.identify.wait")
      assert.include(names, "vigil.backoff")
      for (const span of spans) assert.strictEqual(span.status._tag, "Ended", span.name)
      // Phases are children of their connection.
      const handshake = spans.find((s) => s.name === "vigil.handshake")!
      assert.strictEqual(Option.getOrUndefined(handshake.parent)?.spanId, connections[0]!.spanId)

      // Every line of the shard carries its shard, attempt and session.
      const shardLines = lines.filter((l) => l.includes("connection to"))
      assert.isAtLeast(shardLines.length, 3)
      for (const line of shardLines) {
        const annotations = JSON.parse(line).annotations
        assert.strictEqual(annotations.shard, 0)
        assert.isNumber(annotations.attempt)
        assert.property(annotations, "session")
      }
      assert.include(lines.join("\n"), '"session":"session-0-1"')
      // The fatal stop is the app's to report: no ERROR line from the library.
      assert.isFalse(
        lines.some((l) => JSON.parse(l).logLevel === "Error"),
        lines.join("\n"),
      )

      // …nor in the typed error the app handles.
      const everything = [...spans.map(spanText), ...lines, JSON.stringify(exit)].join("\n")
      assert.include(everything, "[redacted]", "the echoed reason made it, redacted")
      assert.notInclude(
        everything,
        secret,
        everything
          .split("\n")
          .filter((l) => l.includes(secret))
          .join("\n")
          .slice(0, 3000),
      )
    }).pipe(Effect.provide(layer))
  })

  it.effect("a shard shut down mid-handshake leaves no span open", () => {
    // No identify left today, and the throttle waits for the reset: the handshake never ends.
    const { spans, layer } = captured({
      maxConcurrency: 1,
      sessionStartLimit: { total: 1000, remaining: 0, resetAfterMillis: 3_600_000 },
      onExhausted: "wait",
    })
    return Effect.gen(function* () {
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* Shard.make({
            token: Redacted.make(secret),
            intents: 1,
            shard: [0, 1],
            gatewayUrl: "memory://gateway",
          })
          yield* Settle.advance(1_000)
        }),
      )
      const names = spans.map((s) => s.name)
      assert.include(names, "vigil.handshake")
      for (const span of spans) assert.strictEqual(span.status._tag, "Ended", span.name)
    }).pipe(Effect.provide(layer))
  })
})
