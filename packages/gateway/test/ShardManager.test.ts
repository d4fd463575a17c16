import { assert, describe, it } from "@effect/vitest"
import { Metrics, SessionStore, ShardManager } from "@vigil/gateway"
import { MemoryTransport, ScriptedGateway, Settle } from "@vigil/gateway/testing"
import { Effect, Exit, Fiber, Layer, Metric, Random, Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

const interval = 41_250
const env = Layer.mergeAll(
  ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
  SessionStore.SessionStore.layerMemory,
  FetchHttpClient.layer, // not called: these tests hand the manager its /gateway/bot answer
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 }),
)

const gatewayBot = (overrides: Partial<ShardManager.ShardManagerConfig["gatewayBot"] & object> = {}) => ({
  url: "memory://gateway",
  shards: 4,
  session_start_limit: { total: 1000, remaining: 1000, reset_after: 86_400_000, max_concurrency: 4 },
  ...overrides,
})

const config = (
  overrides: Partial<ShardManager.ShardManagerConfig> = {},
): ShardManager.ShardManagerConfig => ({
  token: Redacted.make("manager-token"),
  intents: 1,
  gatewayBot: gatewayBot(),
  ...overrides,
})

/** A snowflake whose shard is `shard` of `count`: (id >> 22) % count. */
const guildOn = (shard: number, count: number) => String((BigInt(count * 1000 + shard) << 22n) | 12345n)

describe("ShardManager", () => {
  it.effect("runs every recommended shard and merges their events, tagged with the shard id", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(config())
      const seen: Array<string> = []
      yield* Effect.forkChild(
        Stream.runForEach(manager.events, (e) =>
          Effect.sync(() => void seen.push(`${e.shardId}:${e.dispatch.type}`)),
        ),
      )
      yield* Settle.settle
      for (let id = 0; id < 4; id++) yield* server.emit("MESSAGE_CREATE", { id: String(id) }, id)
      yield* Settle.settle
      assert.deepStrictEqual(manager.shardIds, [0, 1, 2, 3])
      assert.sameMembers(seen, [
        "0:READY",
        "1:READY",
        "2:READY",
        "3:READY",
        "0:MESSAGE_CREATE",
        "1:MESSAGE_CREATE",
        "2:MESSAGE_CREATE",
        "3:MESSAGE_CREATE",
      ])
      const statuses = yield* manager.statuses
      assert.deepStrictEqual(
        statuses.map((s) => `${s.shard[0]}/${s.shard[1]} ${s.state._tag}`),
        ["0/4 Ready", "1/4 Ready", "2/4 Ready", "3/4 Ready"],
      )
    }).pipe(Effect.provide(env)),
  )

  it.effect("runs a range of shards of a larger count", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(config({ shardCount: 8, shards: { from: 2, to: 3 } }))
      yield* Settle.settle
      assert.deepStrictEqual(manager.shardIds, [2, 3])
      assert.deepStrictEqual(
        server.allIdentifies().map((i) => i.shard),
        [2, 3],
      )
      assert.strictEqual(manager.shardCount, 8)
    }).pipe(Effect.provide(env)),
  )

  it.effect("routes a guild's command to (guild_id >> 22) % shard_count; others get a typed error", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(config({ shards: [0, 2] }))
      yield* Settle.settle
      assert.strictEqual(ShardManager.shardForGuild(guildOn(2, 4), 4), 2)
      // a real snowflake (above 2^53): 81384788765712384 >> 22 = 19403645698, % 4 = 2
      assert.strictEqual(ShardManager.shardForGuild("81384788765712384", 4), 2)
      yield* manager.send(guildOn(2, 4), 4, { guild_id: guildOn(2, 4), channel_id: null })
      yield* manager.send(undefined, 3, { status: "online" }) // not a guild's: shard 0
      yield* Settle.settle
      assert.strictEqual(server.commands(2).length, 1)
      assert.strictEqual(server.commands(0).length, 1)
      const error = yield* Effect.flip(manager.send(guildOn(1, 4), 4, {}))
      assert.strictEqual(error._tag, "ShardNotRunning")
    }).pipe(Effect.provide(env)),
  )

  it.effect("restarts one shard (it resumes) without touching the others", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(config())
      yield* Settle.settle
      const before = [0, 1, 2, 3].map((id) => server.peer(id)!)
      yield* manager.restart(1)
      yield* Settle.settle
      assert.strictEqual(server.resumes(1), 1)
      assert.strictEqual(server.identifies(1).length, 1)
      for (const id of [0, 2, 3]) {
        assert.strictEqual(server.peer(id), before[id], `shard ${id} untouched`)
        assert.isTrue(before[id]!.isOpen())
      }
      assert.isFalse(before[1]!.isOpen())
      yield* manager.stop(3)
      yield* Settle.settle
      assert.isUndefined(manager.shard(3))
      assert.isFalse(before[3]!.isOpen())
      assert.strictEqual(before[3]!.clientCloseCode(), 4900)
    }).pipe(Effect.provide(env)),
  )

  it.effect("session_start_limit: when identifies would run out, a typed error", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(
        config({
          gatewayBot: gatewayBot({
            session_start_limit: { total: 1000, remaining: 2, reset_after: 60_000, max_concurrency: 4 },
          }),
        }),
      )
      const exit = yield* Effect.exit(manager.await)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
      assert.strictEqual(error?._tag === "Some" ? error.value._tag : "", "SessionStartLimitExhausted")
      assert.strictEqual(server.allIdentifies().length, 2)
    }).pipe(Effect.provide(env)),
  )

  it.effect("session_start_limit: or, by configuration, a wait until reset_after", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(
        config({
          onSessionLimitExhausted: "wait",
          gatewayBot: gatewayBot({
            session_start_limit: { total: 1000, remaining: 2, reset_after: 60_000, max_concurrency: 4 },
          }),
        }),
      )
      const waiting = yield* Effect.forkChild(manager.await)
      yield* Settle.advance(59_999)
      assert.strictEqual(server.allIdentifies().length, 2)
      yield* Settle.advance(1)
      assert.strictEqual(server.allIdentifies().length, 4)
      assert.isUndefined(waiting.pollUnsafe())
      yield* Fiber.interrupt(waiting)
    }).pipe(Effect.provide(env)),
  )

  it.effect("a replacement manager for the same bot shares the identify limits of the one before", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const one = config({ gatewayBot: gatewayBot({ shards: 1 }) })
      const first = yield* Effect.scoped(
        Effect.gen(function* () {
          const manager = yield* ShardManager.make(one)
          yield* Settle.settle
          return manager.identifyThrottle
        }),
      )
      yield* server.expireSession(0) // the next connection must identify
      yield* Effect.forkScoped(ShardManager.make({ ...one, identifyThrottle: first }))
      yield* Settle.settle // it resumes, is refused (Invalid Session), waits 3 s, then wants to identify
      yield* Settle.advance(5_249)
      assert.strictEqual(
        server.identifies(0).length,
        1,
        "still inside the first identify's 5 s window (+ margin)",
      )
      yield* Settle.advance(1)
      assert.deepStrictEqual(server.identifies(0), [0, 5_250])
    }).pipe(Effect.provide(env)),
  )

  it.effect("a fatal error on any shard is reported by tag", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make(config())
      yield* Settle.settle
      yield* server.close(4011, 2)
      const error = yield* Effect.flip(manager.await)
      assert.strictEqual(error._tag, "ShardingRequired")
    }).pipe(Effect.provide(env)),
  )

  it.effect("concurrent start and restart of one shard id never run two Shards, even with a slow store", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryTransport.MemoryTransport
      const making = yield* Effect.forkChild(ShardManager.make(config({ shards: [0, 1] })))
      yield* Settle.advance(2_000) // each start loads from the (1 s) store
      const manager = yield* Fiber.join(making)
      assert.strictEqual(memory.openCount(), 2)
      yield* manager.stop(1)
      yield* Effect.forkChild(
        Effect.all([manager.start(1), manager.start(1), manager.restart(1), manager.start(1)], {
          concurrency: "unbounded",
        }),
      )
      yield* Settle.advance(10_000)
      assert.strictEqual(memory.openCount(), 2, "one connection per shard")
      assert.strictEqual(memory.maxOpenCount(), 2, "never a second socket for shard 1")
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
          Layer.sync(SessionStore.SessionStore)(() => {
            const store = SessionStore.makeMemory()
            return { ...store, load: (shard) => Effect.delay(store.load(shard), 1_000) }
          }),
          FetchHttpClient.layer,
          Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 }),
        ),
      ),
    ),
  )

  it.effect(
    "reshard is refused, typed, for the same count, a partial set not in waves, or a short budget; counted",
    () =>
      Effect.gen(function* () {
        const manager = yield* ShardManager.make(
          config({
            gatewayBot: gatewayBot({
              session_start_limit: {
                total: 1000,
                remaining: 10,
                reset_after: 86_400_000,
                max_concurrency: 4,
              },
            }),
          }),
        )
        yield* Settle.settle
        const same = yield* Effect.flip(manager.reshard(4))
        assert.strictEqual(same._tag === "ReshardRefused" && same.reason, "same-count")
        // 6 identifies left after the 4 first; 8 new shards + a margin of 4 need 12
        const budget = yield* Effect.flip(manager.reshard(8))
        assert.strictEqual(budget._tag === "ReshardRefused" && budget.reason, "budget")
        assert.include(budget.message, "6 identifies left")
        const status = yield* manager.reshardStatus
        assert.strictEqual(status.state._tag, "Idle")
        assert.deepStrictEqual(
          [status.last?.outcome, status.last?.from, status.last?.to, status.last?.trigger],
          ["refused", 4, 8, "explicit"],
        )
        assert.strictEqual(manager.shardCount, 4)
        const counted = (yield* Metric.snapshot).find(
          (m) => m.id === Metrics.names.reshards && m.attributes?.["outcome"] === "refused",
        )
        assert.strictEqual(counted?.type === "Counter" && Number(counted.state.count), 2)
      }).pipe(
        Effect.provide(Layer.merge(env, Layer.effect(Metric.MetricRegistry)(Effect.sync(() => new Map())))),
      ),
  )

  it.effect("a partial set reshards only in waves (to a multiple of its count): 4 → 6 is refused", () =>
    Effect.gen(function* () {
      const manager = yield* ShardManager.make(config({ shardCount: 4, shards: [1] }))
      yield* Settle.settle
      const partial = yield* Effect.flip(manager.reshard(6))
      assert.strictEqual(partial._tag === "ReshardRefused" && partial.reason, "partial-set")
    }).pipe(Effect.provide(env)),
  )
})
