/** A user's test on Vigil's test layers: the scripted gateway in memory, under TestClock. */
import { assert, it } from "@effect/vitest"
import { IdentifyThrottle, SessionStore, Shard } from "@vigil/gateway"
import { ScriptedGateway, Settle } from "@vigil/testing"
import { Effect, Layer, Redacted, Stream } from "effect"

const testEnv = Layer.mergeAll(
  ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: 41_250 }),
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
)

it.effect("every message arrives once, across a zombie connection and its resume", () =>
  Effect.gen(function* () {
    const server = yield* ScriptedGateway.ScriptedGateway
    const shard = yield* Shard.make({ token: Redacted.make("test"), intents: 513, shard: [0, 1] })
    const seen: Array<string> = []
    yield* Effect.forkChild(
      Stream.runForEach(shard.events, (event) =>
        Effect.sync(() => {
          if (event.type === "MESSAGE_CREATE") seen.push((event.data as { content: string }).content)
        }),
      ),
    )
    yield* Settle.settle
    yield* server.emit("MESSAGE_CREATE", { content: "one" })
    yield* server.stopAcks()
    yield* server.emit("MESSAGE_CREATE", { content: "two" })
    yield* Settle.advance(90_000)
    yield* server.resumeAcks()
    yield* server.emit("MESSAGE_CREATE", { content: "three" })
    yield* Settle.settle

    assert.deepStrictEqual(seen, ["one", "two", "three"])
    assert.strictEqual(server.resumes(), 1)
  }).pipe(Effect.provide(testEnv)),
)
