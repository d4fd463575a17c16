/**
 * The cluster's count and reshard in PostgreSQL (`internal/Generation.ts`, through
 * `ClusterReshard.reshard` where it is public): what each shard's singleton does in each
 * state, which reshards are refused (typed) and how a failed one ends: rolled back when no
 * wave was done, partial (and continued by the same target) when some were.
 */
import { assert, describe, it } from "@effect/vitest"
import { ClusterReshard } from "@vigil/cluster"
import { IdentifyThrottle } from "@vigil/gateway"
import { Effect, Exit, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as Generation from "../src/internal/Generation.ts"
import { migrate } from "../src/internal/migrate.ts"
import * as TestDatabase from "./TestDatabase.ts"

const throttle = (remaining: number) =>
  Layer.effect(IdentifyThrottle.IdentifyThrottle)(
    IdentifyThrottle.make({
      maxConcurrency: 1,
      sessionStartLimit: { total: 1000, remaining, resetAfterMillis: 86_400_000 },
    }),
  )

/** A fresh database with the cluster's count at `count`. */
const cluster = (count: number) => Effect.andThen(migrate(Generation.migrations), Generation.read(count))

const refusal = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(effect), (exit) =>
    Exit.isFailure(exit)
      ? Exit.findErrorOption(exit).pipe((o) => (o._tag === "Some" ? o.value : undefined))
      : undefined,
  )

describe("the cluster's count", () => {
  it.live("the first runner writes it; later ones read it, whatever count they were started with", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* cluster(2)).count, 2)
      assert.strictEqual((yield* Generation.read(8)).count, 2)
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("roles: old shards serve until their wave, new ones wait until it is done", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* cluster(2)
      const begun = yield* Generation.begin(4)
      assert.strictEqual(begun._tag, "started")
      let state = yield* Generation.read(2)
      assert.deepStrictEqual([state.phase, state.mode], ["running", "waves"])
      assert.deepStrictEqual(
        [
          [0, 2],
          [1, 2],
          [0, 4],
          [2, 4],
          [1, 4],
          [3, 4],
          [0, 8],
        ].map((key) => Generation.roleOf(state, key as [number, number])),
        ["serve", "serve", "wait", "wait", "wait", "wait", "retired"],
      )
      yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["pending"], "go")
      state = yield* Generation.read(2)
      assert.strictEqual(Generation.roleOf(state, [0, 2]), "wave")
      // Only from the states given: a wave not running is not marked handed.
      assert.isFalse(yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["running"], "handed"))
      assert.isTrue(yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["go"], "running"))
      assert.isTrue(yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["running"], "handed"))
      state = yield* Generation.read(2)
      // Handed: the old session is gone, only the wave may finish (whatever the phase).
      assert.strictEqual(Generation.roleOf(state, [0, 2]), "wave")
      assert.strictEqual(state.waves.get(0)?.attempts, 1)
      yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["handed"], "done")
      state = yield* Generation.read(2)
      assert.deepStrictEqual(
        [
          [0, 2],
          [1, 2],
          [0, 4],
          [2, 4],
          [1, 4],
          [3, 4],
        ].map((key) => Generation.roleOf(state, key as [number, number])),
        ["retired", "serve", "serve", "serve", "wait", "wait"],
      )
      yield* Generation.setWave({ from: 2, to: 4, shard: 1 }, ["pending"], "done")
      yield* Generation.finish(2, 4, "completed")
      state = yield* Generation.read(2)
      assert.deepStrictEqual([state.count, state.to, state.phase], [4, undefined, "idle"])
      assert.deepStrictEqual(
        [
          [0, 2],
          [1, 2],
          [0, 4],
          [3, 4],
        ].map((key) => Generation.roleOf(state, key as [number, number])),
        ["retired", "retired", "serve", "serve"],
      )
      const [row] = yield* sql<{ readonly count: number }>`SELECT count FROM vigil_generation`
      assert.strictEqual(row?.count, 4)
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("a count that is not a multiple (3 → 5, 3 → 2): one whole-set wave, carried by old shard 0", () =>
    Effect.gen(function* () {
      yield* cluster(3)
      assert.strictEqual((yield* Generation.begin(5))._tag, "started")
      let state = yield* Generation.read(3)
      assert.deepStrictEqual([state.mode, [...state.waves.keys()]], ["whole-set", [0]], "one wave")
      const roles = (keys: ReadonlyArray<readonly [number, number]>) =>
        keys.map((key) => Generation.roleOf(state, key))
      const all = [
        [0, 3],
        [1, 3],
        [2, 3],
        [0, 5],
        [3, 5],
        [4, 5],
      ] as const
      assert.deepStrictEqual(roles(all), ["serve", "serve", "serve", "wait", "wait", "wait"])
      // Under way: old shard 0 carries it; the other old ones stand aside (their sessions saved).
      yield* Generation.setWave({ from: 3, to: 5, shard: 0 }, ["pending"], "go")
      state = yield* Generation.read(3)
      assert.deepStrictEqual(roles(all), ["wave", "wait", "wait", "wait", "wait", "wait"])
      yield* Generation.setWave({ from: 3, to: 5, shard: 0 }, ["go"], "running")
      state = yield* Generation.read(3)
      assert.deepStrictEqual(roles(all), ["wave", "wait", "wait", "wait", "wait", "wait"])
      // Failed before old shard 0 logged out: every old shard serves again.
      yield* Generation.finish(3, 5, "failed", "identify refused")
      state = yield* Generation.read(3)
      assert.deepStrictEqual(roles(all), ["serve", "serve", "serve", "retired", "retired", "retired"])
      // Handed (the first old shard logged out): only the wave may finish; the others stay aside.
      yield* Generation.begin(5)
      yield* Generation.setWave({ from: 3, to: 5, shard: 0 }, ["pending"], "running")
      yield* Generation.setWave({ from: 3, to: 5, shard: 0 }, ["running"], "handed")
      state = yield* Generation.read(3)
      assert.deepStrictEqual(roles(all), ["wave", "wait", "wait", "wait", "wait", "wait"])
      // Done: every new shard serves, every old one is retired. And fewer shards the same way.
      yield* Generation.setWave({ from: 3, to: 5, shard: 0 }, ["handed"], "done")
      state = yield* Generation.read(3)
      assert.deepStrictEqual(roles(all), ["retired", "retired", "retired", "serve", "serve", "serve"])
      yield* Generation.finish(3, 5, "completed")
      assert.strictEqual((yield* Generation.begin(2))._tag, "started")
      state = yield* Generation.read(3)
      assert.deepStrictEqual([state.count, state.to, [...state.waves.keys()]], [5, 2, [0]])
      assert.deepStrictEqual(
        roles([
          [0, 5],
          [4, 5],
          [0, 2],
          [1, 2],
        ]),
        ["serve", "serve", "wait", "wait"],
      )
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("refused, typed: the same count, one under way, the budget short", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* refusal(ClusterReshard.reshard(4)))?._tag, "ClusterReshardRefused")
      yield* cluster(2)
      const same = yield* refusal(ClusterReshard.reshard(2))
      assert.strictEqual(same?._tag === "ClusterReshardRefused" ? same.reason : undefined, "same-count")
      // 4 new shards + a margin of 2 (the serving count) need 6 identifies.
      const short = yield* refusal(ClusterReshard.reshard(4).pipe(Effect.provide(throttle(5))))
      assert.strictEqual(short?._tag === "ClusterReshardRefused" ? short.reason : undefined, "budget")
      yield* Generation.begin(4)
      const busy = yield* refusal(ClusterReshard.reshard(8))
      assert.strictEqual(busy?._tag === "ClusterReshardRefused" ? busy.reason : undefined, "in-progress")
    }).pipe(Effect.provide(Layer.merge(TestDatabase.layer, throttle(1000)))),
  )

  it.live(
    "a failed reshard: rolled back with no wave done; partial with one, continued by the same target only",
    () =>
      Effect.gen(function* () {
        yield* cluster(2)
        yield* Generation.begin(4)
        yield* Generation.finish(2, 4, "failed", "identify refused")
        let state = yield* Generation.read(2)
        assert.deepStrictEqual(
          [state.count, state.to, state.phase, state.reason],
          [2, undefined, "failed", "identify refused"],
        )
        assert.strictEqual(Generation.roleOf(state, [0, 2]), "serve")
        assert.strictEqual(Generation.roleOf(state, [0, 4]), "retired")

        yield* Generation.begin(4)
        yield* Generation.setWave({ from: 2, to: 4, shard: 0 }, ["pending"], "done")
        yield* Generation.finish(2, 4, "failed", "wave 1 failed")
        state = yield* Generation.read(2)
        assert.deepStrictEqual([state.count, state.to, state.phase], [2, 4, "partial"])
        // Each guild on one shard: old shard 0's on 0/4 and 2/4, old shard 1's still on 1/2.
        assert.deepStrictEqual(
          [
            [0, 2],
            [1, 2],
            [0, 4],
            [2, 4],
            [1, 4],
            [3, 4],
          ].map((key) => Generation.roleOf(state, key as [number, number])),
          ["retired", "serve", "serve", "serve", "wait", "wait"],
        )
        const other = yield* Generation.begin(8)
        assert.strictEqual(other._tag, "in-progress")
        const again = yield* Generation.begin(4)
        assert.strictEqual(again._tag, "started")
        state = yield* Generation.read(2)
        assert.deepStrictEqual(
          [...state.waves].map(([shard, wave]) => [shard, wave.state]),
          [
            [0, "done"],
            [1, "pending"],
          ],
        )
      }).pipe(Effect.provide(TestDatabase.layer)),
  )
})
