/**
 * Cluster health on PostgreSQL: what one runner reports another reads; a runner that lost the
 * shard (an older epoch) never overwrites its new owner's row nor removes it; a row nobody
 * refreshes turns stale.
 */
import { assert, describe, it } from "@effect/vitest"
import { ClusterHealth } from "@vigil/cluster"
import type { Shard } from "@vigil/gateway"
import { Effect, Layer } from "effect"
import * as TestDatabase from "./TestDatabase.ts"

const status = (state: Shard.ShardState, latency?: number): Shard.ShardStatus => ({
  shard: [1, 4],
  state,
  latency,
  sessionId: "session-1",
  connections: 1,
  identifies: 1,
  resumes: 0,
  lastError: undefined,
})

/** A runner's view, on a pool of its own. */
const runner = <A, E>(
  owner: string,
  use: (health: ClusterHealth.ClusterHealthService) => Effect.Effect<A, E>,
) =>
  ClusterHealth.ClusterHealth.use(use).pipe(
    Effect.provide(
      ClusterHealth.layer({ owner, interval: "100 millis" }).pipe(
        Layer.provide(TestDatabase.client({ maxConnections: 1 })),
      ),
    ),
  )

describe("ClusterHealth", () => {
  it.live(
    "one runner's reports are read by another; an older epoch neither overwrites nor removes them",
    () =>
      Effect.gen(function* () {
        yield* runner("10.0.0.1:34431", (h) => h.report([1, 4], 1, status({ _tag: "Ready", since: 0 }, 40)))
        yield* runner("10.0.0.2:34431", (h) => h.report([1, 4], 2, status({ _tag: "Resuming" })))
        // The first runner, late: it lost the shard to epoch 2.
        yield* runner("10.0.0.1:34431", (h) =>
          Effect.andThen(
            h.report([1, 4], 1, status({ _tag: "Stopped", reason: "fenced: superseded" })),
            h.leave([1, 4], 1),
          ),
        )
        const [row, ...rest] = yield* runner("10.0.0.3:34431", (h) => h.read)
        assert.deepStrictEqual(rest, [])
        assert.deepStrictEqual(
          { shard: row!.shard, owner: row!.owner, epoch: row!.epoch, state: row!.state, stale: row!.stale },
          { shard: [1, 4], owner: "10.0.0.2:34431", epoch: 2, state: "Resuming", stale: false },
        )
        assert.strictEqual(row!.latencyMillis, undefined)

        yield* runner("10.0.0.2:34431", (h) =>
          h.report([1, 4], 2, status({ _tag: "BackingOff", until: 0, reason: "closed with 1006" }, 12)),
        )
        const [backingOff] = yield* runner("10.0.0.3:34431", (h) => h.read)
        assert.strictEqual(backingOff!.detail, "closed with 1006")
        assert.strictEqual(backingOff!.latencyMillis, 12)

        // Nobody refreshes it for more than three intervals (0.3 s): stale.
        yield* Effect.sleep("400 millis")
        assert.isTrue((yield* runner("10.0.0.3:34431", (h) => h.read))[0]!.stale)

        // Its owner leaves gracefully: no row.
        yield* runner("10.0.0.2:34431", (h) => h.leave([1, 4], 2))
        assert.deepStrictEqual(yield* runner("10.0.0.3:34431", (h) => h.read), [])
      }).pipe(Effect.provide(TestDatabase.fresh)),
  )
})
