import { assert, it } from "@effect/vitest"
import { IdentifyThrottle, type Protocol, SessionStore, Shard } from "@vigil/gateway"
import { ScriptedGateway, Settle } from "@vigil/testing"
import { Effect, Layer, Random, Redacted, Stream } from "effect"

// Your bot: counts messages per channel.
const countMessages = (events: Stream.Stream<Protocol.Dispatch>, counts: Map<string, number>) =>
  Stream.runForEach(events, (event) =>
    Effect.sync(() => {
      if (event.type !== "MESSAGE_CREATE") return
      const channel = (event.data as { channel_id: string }).channel_id
      counts.set(channel, (counts.get(channel) ?? 0) + 1)
    }),
  )

// A scripted gateway in memory; TestClock (from it.effect) drives every timer.
const testEnv = Layer.mergeAll(
  ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: 41_250 }),
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
)

it.effect("my bot counts every message exactly once, even across a zombie connection", () =>
  Effect.gen(function* () {
    const server = yield* ScriptedGateway.ScriptedGateway
    const shard = yield* Shard.make({ token: Redacted.make("test"), intents: 513, shard: [0, 1] })
    const counts = new Map<string, number>()
    yield* Effect.forkChild(countMessages(shard.events, counts))
    yield* Settle.settle

    yield* server.emit("MESSAGE_CREATE", { channel_id: "42", content: "hi" })
    yield* server.stopAcks() // the link goes silent: heartbeats get no ACK
    yield* server.emit("MESSAGE_CREATE", { channel_id: "42", content: "still there?" })
    yield* Settle.advance(90_000) // the zombie is detected, the shard resumes
    yield* server.resumeAcks()
    yield* server.emit("MESSAGE_CREATE", { channel_id: "42", content: "back" })
    yield* Settle.settle

    assert.strictEqual(counts.get("42"), 3)
    assert.strictEqual(server.resumes(), 1)
  }).pipe(
    Effect.provide(testEnv),
    // Heartbeat and backoff jitter come from Random: a fixed seed makes every run the same run.
    Random.withSeed("my bot"),
  ),
)
