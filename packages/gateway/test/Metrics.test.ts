/**
 * The shard's metrics, read back from a fresh registry after scripted scenarios under
 * TestClock: what an operator's dashboard would show for a zombie → resume, a close code,
 * and a server that invents event types without end.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, Metrics, SessionStore, Shard } from "@vigil/gateway"
import * as ScriptedGateway from "@vigil/gateway/testing/ScriptedGateway"
import * as Settle from "@vigil/gateway/testing/Settle"
import { Effect, Layer, Metric, Random, Redacted, Stream } from "effect"

const interval = 41_250
const jitter = 0.5

const env = Layer.mergeAll(
  ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({
    maxConcurrency: 1,
    sessionStartLimit: { total: 1000, remaining: 10, resetAfterMillis: 60_000 },
  }),
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => jitter, nextIntUnsafe: () => 0 }),
  // Each test reads its own registry, not the process-wide default.
  Layer.effect(Metric.MetricRegistry)(Effect.sync(() => new Map())),
)

const started = Effect.gen(function* () {
  const server = yield* ScriptedGateway.ScriptedGateway
  const shard = yield* Shard.make({
    token: Redacted.make("metrics-test-token"),
    intents: 1,
    shard: [3, 4],
    gatewayUrl: "memory://gateway",
  })
  yield* Effect.forkChild(Stream.runDrain(shard.events))
  yield* Settle.settle
  return { server, shard }
})

/** The value of one series: counter count, gauge value, histogram count; undefined if absent. */
const read = (name: string, attributes: Record<string, string> = {}) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const found = snapshots.find(
      (s) => s.id === name && Object.entries(attributes).every(([k, v]) => s.attributes?.[k] === v),
    )
    if (found === undefined) return undefined
    switch (found.type) {
      case "Counter":
        return Number(found.state.count)
      case "Gauge":
        return Number(found.state.value)
      case "Histogram":
        return found.state.count
      default:
        return undefined
    }
  })

const shard = { shard: "3" }

describe("Metrics", () => {
  it.effect("a zombie → resume shows in the shard's counters, gauges and histogram", () =>
    Effect.gen(function* () {
      const { server } = yield* started
      yield* server.emitMessages(3, 3)
      yield* Settle.advance(interval * jitter) // first beat, ACKed
      assert.strictEqual(yield* read(Metrics.names.heartbeatRtt, shard), 1)
      assert.strictEqual(yield* read(Metrics.names.state, { ...shard, state: "Ready" }), 1)
      // One series per shard, of its current state: the earlier one is gone.
      assert.isUndefined(yield* read(Metrics.names.state, { ...shard, state: "Connecting" }))
      yield* server.stopAcks(3)
      yield* Settle.advance(interval) // unanswered
      yield* Settle.advance(interval) // zombie
      yield* server.resumeAcks(3)
      yield* Settle.settle
      assert.strictEqual(yield* read(Metrics.names.zombies, shard), 1)
      assert.strictEqual(
        yield* read(Metrics.names.connectionErrors, { ...shard, error: "ZombieDetected" }),
        1,
      )
      assert.strictEqual(yield* read(Metrics.names.connections, shard), 2)
      assert.strictEqual(yield* read(Metrics.names.identifies, shard), 1)
      assert.strictEqual(yield* read(Metrics.names.resumes, shard), 1)
      assert.strictEqual(yield* read(Metrics.names.state, { ...shard, state: "Ready" }), 1)
      yield* server.emitMessages(2, 3, 5)
      yield* Settle.settle
      assert.strictEqual(yield* read(Metrics.names.events, { ...shard, type: "MESSAGE_CREATE" }), 5)
      assert.strictEqual(yield* read(Metrics.names.events, { ...shard, type: "READY" }), 1)
      assert.strictEqual(yield* read(Metrics.names.events, { ...shard, type: "RESUMED" }), 1)
      assert.strictEqual(yield* read(Metrics.names.sequence, shard), 7) // READY, 3, RESUMED, 2
      assert.strictEqual(yield* read(Metrics.names.queueDepth, shard), 0)
      // Process-wide: one identify spent of the 10 left, and it waited for its turn once.
      assert.strictEqual(yield* read(Metrics.names.sessionStartRemaining), 9)
      assert.strictEqual(yield* read(Metrics.names.identifyWait), 1)
    }).pipe(Effect.provide(env)),
  )

  it.effect("with Metrics.Enabled off a shard records no series at all, and still runs", () =>
    Effect.gen(function* () {
      const { server, shard: running } = yield* started
      yield* server.emitMessages(3, 3)
      yield* Settle.advance(interval * jitter)
      assert.strictEqual((yield* running.health).delivered, 4) // READY and 3 messages
      const series = (yield* Metric.snapshot).filter((s) => s.attributes?.["shard"] === "3")
      assert.deepStrictEqual(
        series.map((s) => s.id),
        [],
      )
    }).pipe(Effect.provide(Layer.merge(env, Layer.succeed(Metrics.Enabled)(false)))),
  )

  it.effect("closes are counted by code, invalid sessions by themselves", () =>
    Effect.gen(function* () {
      const { server } = yield* started
      yield* Settle.advance(10_000)
      yield* server.close(4000, 3)
      yield* Settle.advance(10_000)
      yield* server.close(4000, 3)
      yield* Settle.advance(10_000)
      yield* server.invalidSession(true, 3)
      yield* Settle.advance(10_000)
      assert.strictEqual(yield* read(Metrics.names.closes, { ...shard, code: "4000" }), 2)
      assert.strictEqual(yield* read(Metrics.names.connectionErrors, { ...shard, error: "ServerClosed" }), 2)
      assert.strictEqual(yield* read(Metrics.names.invalidSessions, shard), 1)
      assert.strictEqual(yield* read(Metrics.names.resumes, shard), 3)
    }).pipe(Effect.provide(env)),
  )

  it.effect(
    "the send limiter's waits and refusals are per shard: a full window delays commands, skips a requested beat",
    () =>
      Effect.gen(function* () {
        const { server, shard: running } = yield* started
        const commands = 110 // more than the window admits (106 at a 41.25 s interval)
        yield* Effect.forkChild(
          Effect.forEach(Array.from({ length: commands }), () => running.send(3, { since: null })),
        )
        yield* Settle.settle
        assert.isUndefined(yield* read(Metrics.names.sendRefused, shard))
        yield* server.requestHeartbeat(3) // the window is full of commands: this beat is skipped
        yield* Settle.settle
        assert.strictEqual(yield* read(Metrics.names.sendRefused, shard), 1)
        yield* Settle.advance(70_000)
        const waits = (yield* Metric.snapshot).find(
          (s) => s.id === Metrics.names.sendWait && s.attributes?.["shard"] === "3",
        )
        assert.strictEqual(waits?.type, "Histogram")
        if (waits?.type !== "Histogram") return
        assert.strictEqual(waits.state.count, commands)
        assert.strictEqual(waits.state.min, 0)
        assert.isAbove(waits.state.max, 50) // the last commands waited for the window to move
      }).pipe(Effect.provide(env)),
  )

  it.effect("a server inventing event types cannot grow the registry past the cap", () =>
    Effect.gen(function* () {
      const { server } = yield* started
      const invented = Metrics.maxLabelValues + 50
      for (let i = 0; i < invented; i++) yield* server.emit(`INVENTED_${i}`, {}, 3)
      yield* server.emit("X".repeat(1000), {}, 3)
      yield* Settle.settle
      const series = (yield* Metric.snapshot).filter((s) => s.id === Metrics.names.events)
      assert.strictEqual(series.length, Metrics.maxLabelValues + 1) // the cap, plus `other`
      // READY took one place; the rest of the invented types and the long one are `other`.
      assert.strictEqual(yield* read(Metrics.names.events, { ...shard, type: "other" }), 52)
    }).pipe(Effect.provide(env)),
  )

  it.effect("the shard's live gauges leave the registry with the shard's scope", () =>
    Effect.gen(function* () {
      yield* Effect.scoped(started)
      assert.isUndefined(yield* read(Metrics.names.sequence, shard))
      assert.isUndefined(yield* read(Metrics.names.state, { ...shard, state: "Ready" }))
      assert.strictEqual(yield* read(Metrics.names.identifies, shard), 1, "counters stay")
    }).pipe(Effect.provide(env)),
  )

  it("the Grafana dashboard queries only metrics Vigil exports", () => {
    const dashboard = readFileSync(new URL("../../../grafana/vigil-dashboard.json", import.meta.url), "utf8")
    const used = new Set(dashboard.match(/vigil_[a-z_]+/g) ?? [])
    const exported = new Set(
      Object.values(Metrics.names).flatMap((name) => [
        name,
        `${name}_bucket`,
        `${name}_sum`,
        `${name}_count`,
      ]),
    )
    assert.isAtLeast(used.size, 8)
    for (const name of used) assert.isTrue(exported.has(name), name)
  })
})
