/**
 * Session stores and how a shard writes to them, every timing decided by TestClock: keys by
 * shard id and shard count, a corrupt or foreign value as a logged miss, and writes coalesced
 * (per interval or per batch of events, at once on READY / RESUMED / shutdown), never one per
 * event and never one that brings back a forgotten session.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, KeyValueSessionStore, SessionStore, Shard } from "@vigil/gateway"
import { ScriptedGateway, Settle } from "@vigil/gateway/testing"
import { Effect, Layer, Option, Random, Redacted, Stream } from "effect"
import { KeyValueStore } from "effect/persistence"
import * as Invariants from "../src/Invariants.ts"

const interval = 41_250
const session = { sessionId: "s1", sequence: 7, resumeUrl: "wss://resume.example" }

const fixedRandom = Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 })

const kvStore = KeyValueSessionStore.layer.pipe(Layer.provideMerge(KeyValueStore.layerMemory))

describe("SessionStore", () => {
  it.effect("the memory store keys by shard id and shard count", () =>
    Effect.gen(function* () {
      const store = SessionStore.makeMemory()
      yield* store.save([3, 8], session)
      assert.deepStrictEqual(yield* store.load([3, 8]), Option.some(session))
      assert.isTrue(Option.isNone(yield* store.load([3, 16])), "another shard count, another session")
      yield* store.clear([3, 8])
      assert.isTrue(Option.isNone(yield* store.load([3, 8])))
    }),
  )
})

describe("KeyValueSessionStore", () => {
  it.effect("round-trips a session under a key of shard id and shard count", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore.SessionStore
      const kv = yield* KeyValueStore.KeyValueStore
      yield* store.save([3, 8], session)
      yield* store.save([3, 16], { ...session, sessionId: "s2", sequence: null })
      assert.deepStrictEqual(yield* store.load([3, 8]), Option.some(session))
      assert.deepStrictEqual(
        yield* store.load([3, 16]),
        Option.some({ ...session, sessionId: "s2", sequence: null }),
      )
      assert.deepStrictEqual([...(yield* kv.keys)].sort(), ["vigil-shard-3-of-16", "vigil-shard-3-of-8"])
      yield* store.clear([3, 8])
      assert.isTrue(Option.isNone(yield* store.load([3, 8])))
      assert.isTrue(Option.isSome(yield* store.load([3, 16])))
    }).pipe(Effect.provide(kvStore)),
  )

  for (const [what, value] of [
    ["truncated JSON", '{"sessionId":"s1","seq'],
    ["a foreign value", JSON.stringify({ hello: "world" })],
    ["a wrong type", JSON.stringify({ ...session, sequence: "7" })],
  ] as const) {
    it.effect(`${what} is a logged miss, not a crash`, () => {
      const logs = Invariants.capture()
      return Effect.gen(function* () {
        const kv = yield* KeyValueStore.KeyValueStore
        yield* kv.set(KeyValueSessionStore.keyOf([0, 1]), value)
        const loaded = yield* (yield* SessionStore.SessionStore).load([0, 1])
        assert.isTrue(Option.isNone(loaded))
        const warning = logs.texts().find((t) => t.includes("session store: load for shard 0/1 failed"))
        assert.isDefined(warning)
        assert.include(warning, "not a session")
      }).pipe(Effect.provide(Layer.merge(kvStore, logs.layer)))
    })
  }

  it.effect("a store that cannot write logs it and carries on", () => {
    const logs = Invariants.capture()
    // A key-value store whose writes fail, as a full disk's would.
    const diskFull = Layer.effect(KeyValueStore.KeyValueStore)(
      Effect.gen(function* () {
        const inner = yield* KeyValueStore.KeyValueStore
        return KeyValueStore.make({
          ...inner,
          set: (key) =>
            Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "set", key, message: "disk full" })),
        })
      }),
    ).pipe(Layer.provide(KeyValueStore.layerMemory))
    const store = KeyValueSessionStore.layer.pipe(Layer.provide(diskFull))
    return Effect.gen(function* () {
      yield* (yield* SessionStore.SessionStore).save([0, 1], session)
      assert.isDefined(logs.texts().find((t) => t.includes("save for shard 0/1 failed: disk full")))
    }).pipe(Effect.provide(Layer.merge(store, logs.layer)))
  })
})

/** A memory store that records every write; `saveMillis(n)`: how long the n-th save takes. */
const recording = (saveMillis: (n: number) => number = () => 0) => {
  const memory = SessionStore.makeMemory()
  const writes: Array<number | null | "clear"> = []
  let saves = 0
  const service: SessionStore.SessionStoreService = {
    load: memory.load,
    save: (shard, s) => {
      const write = Effect.andThen(
        memory.save(shard, s),
        Effect.sync(() => void writes.push(s.sequence)),
      )
      const millis = saveMillis(saves++)
      // Effect.delay(0) would wait for the next clock tick: no delay means none.
      return millis > 0 ? Effect.delay(write, millis) : write
    },
    clear: (shard) =>
      Effect.andThen(
        memory.clear(shard),
        Effect.sync(() => void writes.push("clear")),
      ),
  }
  const layer = Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
    Layer.succeed(SessionStore.SessionStore)(service),
    IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
    fixedRandom,
  )
  return { memory, writes, layer }
}

const started = (sessionSave: SessionStore.SaveOptions) =>
  Effect.gen(function* () {
    const server = yield* ScriptedGateway.ScriptedGateway
    const shard = yield* Shard.make({
      token: Redacted.make("store-test-token"),
      intents: 1,
      shard: [0, 1],
      gatewayUrl: "memory://gateway",
      sessionSave,
    })
    yield* Effect.forkChild(Stream.runDrain(shard.events))
    yield* Settle.settle
    return { server, shard }
  })

const lastSequence = (server: ScriptedGateway.ScriptedGatewayService) => server.produced().at(-1)!.s

describe("a shard's writes to the store", () => {
  it.effect("READY is saved at once; then the moving sequence once per interval, not per event", () => {
    const { writes, layer } = recording()
    return Effect.gen(function* () {
      const { server } = yield* started({ interval: "1 second", events: 1000 })
      assert.deepStrictEqual(writes, [null], "READY: the new session, at once")
      yield* server.emitMessages(50)
      yield* Settle.settle
      assert.strictEqual(writes.length, 1, "50 events, no write yet")
      yield* Settle.advance(1_000)
      assert.deepStrictEqual(writes, [null, lastSequence(server)], "one write for the 50")
      yield* Settle.advance(10_000)
      assert.strictEqual(writes.length, 2, "nothing moved: nothing written")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a burst is written every `events` events, so the store lags by fewer than that", () => {
    const { memory, writes, layer } = recording()
    return Effect.gen(function* () {
      const { server } = yield* started({ interval: "1 hour", events: 10 })
      for (let batch = 0; batch < 10; batch++) {
        yield* server.emitMessages(7, 0, 2 + batch * 7)
        yield* Settle.settle
        const stored = Option.getOrThrow(yield* memory.load([0, 1])).sequence ?? 0
        assert.isBelow(lastSequence(server) - stored, 10, `batch ${batch}`)
      }
      const sequenceWrites = writes.length - 1
      assert.isAtLeast(sequenceWrites, 5, "70 events, a write per 10 at most")
      assert.isAtMost(sequenceWrites, 7)
    }).pipe(Effect.provide(layer))
  })

  it.effect("RESUMED is saved at once, with the replayed events", () => {
    const { memory, layer } = recording()
    return Effect.gen(function* () {
      const { server } = yield* started({ interval: "1 hour" })
      yield* server.emitMessages(3)
      yield* Settle.advance(60_000) // up long enough to count as healthy
      yield* server.drop()
      yield* server.emitMessages(4, 0, 5) // while disconnected: replayed on resume
      yield* Settle.settle
      assert.strictEqual(server.resumes(), 1)
      const replayed = server.produced().filter((e) => e.t === "MESSAGE_CREATE")
      const stored = Option.getOrThrow(yield* memory.load([0, 1]))
      assert.strictEqual(stored.sequence, replayed.at(-1)!.s, "saved before the hour is up")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a slow periodic write never lands after a logout's clear", () => {
    const { memory, writes, layer } = recording((n) => (n === 1 ? 4_000 : 0)) // the first periodic write: 4 s
    return Effect.gen(function* () {
      const { server, shard } = yield* started({ interval: "1 hour", events: 5 })
      yield* server.emitMessages(5) // starts a periodic write
      yield* Settle.settle
      yield* Effect.forkChild(shard.logout) // forgets the session while that write is under way
      yield* Settle.advance(10_000)
      assert.strictEqual(writes.at(-1), "clear")
      assert.isTrue(Option.isNone(yield* memory.load([0, 1])))
    }).pipe(Effect.provide(layer))
  })

  it.effect("a corrupt stored value costs an identify, never the shard", () =>
    Effect.gen(function* () {
      const kv = yield* KeyValueStore.KeyValueStore
      yield* kv.set(KeyValueSessionStore.keyOf([0, 1]), "not json")
      const { server, shard } = yield* started({})
      assert.strictEqual(server.identifies().length, 1)
      assert.strictEqual(server.resumes(), 0)
      yield* Settle.advance(1_000)
      const stored = Option.getOrThrow(yield* (yield* SessionStore.SessionStore).load([0, 1]))
      assert.strictEqual(stored.sessionId, (yield* shard.health).sessionId)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
          kvStore,
          IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
          fixedRandom,
        ),
      ),
    ),
  )
})
