/**
 * Shard ownership on PostgreSQL: each acquisition takes a higher epoch; a superseded owner's
 * saves and clears are refused in SQL (the new owner's row stays intact) and lapse its
 * ownership at once; a takeover waits out a live lease but not a released one; the lease is
 * renewed on the database's clock; timings that cannot fence in time are a typed error.
 */
import { assert, describe, it } from "@effect/vitest"
import { ClusterError, PgSessionStore, PgShardOwners, ShardOwners } from "@vigil/cluster"
import { SessionStore } from "@vigil/gateway"
import { eventually } from "@vigil/testing/Eventually"
import { Duration, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { SqlClient } from "effect/sql"
import type * as OwnerProbe from "../src/internal/OwnerProbe.ts"
import * as TestDatabase from "./TestDatabase.ts"

const key = [0, 1] as const
// Renewed rarely (the first at once, the next 4 s later): in the first test a save, not a
// renewal, must be what meets the newer epoch.
const timings: PgShardOwners.PgShardOwnersOptions = {
  shardLockExpiration: "6 seconds",
  fenceAfter: "5 seconds",
  renewInterval: "4 seconds",
  gatewayDropAfter: "1 second",
}

// For takeovers from an owner that never reported its socket closed: the gateway drops a silent
// socket within 3 s of the lease's end; the previous runner's process is alive (or gone).
const dropTimings = (probe: OwnerProbe.Verdict): PgShardOwners.PgShardOwnersOptions => ({
  shardLockExpiration: "3 seconds",
  fenceAfter: "2 seconds",
  renewInterval: "200 millis",
  gatewayDropAfter: "3 seconds",
  probe: () => Effect.succeed(probe),
})

/** The lease of the current epoch ends now, unreported: its runner went silent (cut, frozen). */
const silenced = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE vigil_shard_owners SET lease_until = clock_timestamp()`
  yield* sql`DELETE FROM vigil_closed_sockets`
}).pipe(Effect.orDie)

/** An owner whose runner can be killed: its pool gone, its lease over, nothing released or reported. */
const killable = (options: PgShardOwners.PgShardOwnersOptions) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const owners = yield* runner(options).pipe(Scope.provide(scope))
    const ownership = yield* owners.acquire(key).pipe(Scope.provide(scope))
    // (Closing runs the graceful finalizers; `silenced` takes back what they said.)
    return { ownership, kill: Scope.close(scope, Exit.void).pipe(Effect.andThen(silenced)) }
  })

/** The owners service of one runner: a pool of its own. */
const runner = (options: PgShardOwners.PgShardOwnersOptions = timings) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const context = yield* Layer.buildWithScope(
      PgShardOwners.layer(options).pipe(Layer.provide(TestDatabase.client({ maxConnections: 3 }))),
      scope,
    )
    return (yield* ShardOwners.ShardOwners.pipe(Effect.provide(context))) as ShardOwners.ShardOwnersService
  })

/** An ownership in a scope of its own, closed by the test (a graceful leave) or with the test's. */
const acquire = (owners: ShardOwners.ShardOwnersService) =>
  Effect.gen(function* () {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const ownership = yield* owners.acquire(key).pipe(Scope.provide(scope))
    return { ownership, leave: Scope.close(scope, Exit.void) }
  })

const epochRow = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{
    epoch: number
    leaseMillis: number
  }>`SELECT epoch::float8 AS epoch, (extract(epoch FROM lease_until - clock_timestamp()) * 1000)::float8 AS "leaseMillis"
     FROM vigil_shard_owners WHERE shard_id = 0 AND shard_count = 1`
  return rows[0]
}).pipe(Effect.orDie)

const stored = SessionStore.SessionStore.use((store) => store.load(key)).pipe(
  Effect.provide(PgSessionStore.layer.pipe(Layer.provide(TestDatabase.client()))),
)

describe("PgShardOwners", () => {
  it.live(
    "the older owner's save is refused once a newer epoch exists; the new owner's row stays intact",
    () =>
      Effect.gen(function* () {
        const a = yield* acquire(yield* runner())
        assert.strictEqual(a.ownership.epoch, 1)
        yield* a.ownership.store.save(key, { sessionId: "old", sequence: 10, resumeUrl: "wss://old.example" })

        // B takes the shard (epoch 2) and, A's lease being live, waits it out.
        const b = yield* Effect.forkChild(acquire(yield* runner({ ...timings, renewInterval: "500 millis" })))
        const context = yield* Effect.context<SqlClient.SqlClient>()
        yield* eventually(
          Effect.map(Effect.provide(epochRow, context), (row) => row?.epoch === 2),
          "the new epoch taken",
          "10 seconds",
        )
        assert.isTrue(a.ownership.valid(), "A lapsed before it wrote anything")
        // A, not knowing yet, saves another session (a fresh identify): refused in SQL.
        yield* a.ownership.store.save(key, {
          sessionId: "late",
          sequence: 1,
          resumeUrl: "wss://late.example",
        })
        assert.isFalse(a.ownership.valid(), "the refused save did not lapse the ownership")
        assert.deepStrictEqual(yield* a.ownership.lapsed, { _tag: "Superseded" })

        const { ownership } = yield* Fiber.join(b)
        assert.strictEqual(ownership.epoch, 2)
        assert.isAbove(ownership.waitedMillis, 2_000, "the takeover did not wait for the live lease")
        const mine = { sessionId: "old", sequence: 12, resumeUrl: "wss://old.example" }
        yield* ownership.store.save(key, mine)
        // A's writes, late again: a save and a clear, refused.
        yield* a.ownership.store.save(key, {
          sessionId: "late",
          sequence: 99,
          resumeUrl: "wss://late.example",
        })
        yield* a.ownership.store.clear(key)
        assert.deepStrictEqual(yield* stored, Option.some(mine))
        yield* a.leave // A's release must not end B's lease
        assert.isAbove((yield* epochRow)!.leaseMillis, 0)
      }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("without fencing, that late save replaces the new owner's session (what the epoch prevents)", () =>
    Effect.gen(function* () {
      const plain = PgSessionStore.layer.pipe(Layer.provide(TestDatabase.client()))
      const save = (session: SessionStore.StoredSession) =>
        SessionStore.SessionStore.use((store) => store.save(key, session)).pipe(Effect.provide(plain))
      yield* save({ sessionId: "new", sequence: 12, resumeUrl: "wss://new.example" })
      yield* save({ sessionId: "late", sequence: 1, resumeUrl: "wss://late.example" })
      assert.strictEqual(Option.getOrThrow(yield* stored).sessionId, "late")
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live("a graceful leave ends the lease: the next owner starts without waiting", () =>
    Effect.gen(function* () {
      const a = yield* acquire(yield* runner())
      yield* a.leave
      const b = yield* acquire(yield* runner())
      assert.strictEqual(b.ownership.epoch, 2)
      assert.strictEqual(b.ownership.waitedMillis, 0)
      assert.isTrue(b.ownership.valid())
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live(
    "a takeover from an owner that may be alive and never reported its socket closed waits until the gateway dropped it; a runner address that refuses ends the wait",
    () =>
      Effect.gen(function* () {
        const a = yield* killable(dropTimings("maybe-alive"))
        yield* a.kill
        const b = yield* killable(dropTimings("maybe-alive"))
        assert.isAtLeast(b.ownership.waitedMillis, 2_800, "B connected while the gateway may hold A's socket")
        assert.isAtMost(b.ownership.waitedMillis, 4_500)
        // The same, but C finds B's runner address refusing connections: its process is gone.
        yield* b.kill
        const c = yield* acquire(yield* runner(dropTimings("gone")))
        assert.isAtMost(c.ownership.waitedMillis, 500, "waited for a socket whose process is gone")
      }).pipe(Effect.provide(TestDatabase.layer)),
    30_000,
  )

  it.live(
    "the previous owner reporting its socket closed ends the takeover's wait at once",
    () =>
      Effect.gen(function* () {
        const a = yield* acquire(yield* runner(dropTimings("maybe-alive")))
        yield* silenced
        const b = yield* Effect.forkChild(
          acquire(yield* runner({ ...dropTimings("maybe-alive"), gatewayDropAfter: "20 seconds" })),
        )
        yield* Effect.sleep("1 second")
        yield* a.ownership.closed // A, back in touch, says its socket is closed
        const { ownership } = yield* Fiber.join(b)
        assert.isAtLeast(ownership.waitedMillis, 900)
        assert.isAtMost(ownership.waitedMillis, 3_000, "the report did not end the wait")
      }).pipe(Effect.provide(TestDatabase.layer)),
    30_000,
  )

  it.live("after a takeover from a dead owner, a graceful leave hands over without any wait", () =>
    Effect.gen(function* () {
      const a = yield* killable(dropTimings("maybe-alive"))
      yield* a.kill
      // B finds A's process gone: no wait, and nothing of A's to pass on.
      const b = yield* acquire(yield* runner(dropTimings("gone")))
      assert.isAtMost(b.ownership.waitedMillis, 500)
      yield* b.leave
      const c = yield* acquire(yield* runner(dropTimings("maybe-alive")))
      assert.isAtMost(
        c.ownership.waitedMillis,
        500,
        "the graceful leave passed on a wait for a dead owner's socket",
      )
    }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.live(
    "an owner that dies while waiting passes the wait on to the next",
    () =>
      Effect.gen(function* () {
        const a = yield* killable(dropTimings("maybe-alive"))
        yield* a.kill
        // B waits (up to 3 s), but its runner is killed after 1 s: it never connected.
        const bScope = yield* Scope.make()
        const owners = yield* runner(dropTimings("maybe-alive")).pipe(Scope.provide(bScope))
        const b = yield* Effect.forkChild(owners.acquire(key).pipe(Scope.provide(bScope)))
        yield* Effect.sleep("1 second")
        yield* Fiber.interrupt(b)
        yield* Scope.close(bScope, Exit.void)
        // (A kill runs no finalizer: B's lease ends unreleased and unreported.)
        yield* silenced
        // C finds B's address refusing (gone): nothing to wait for B, but A's socket may be open.
        const c = yield* acquire(yield* runner(dropTimings("gone")))
        assert.isAtLeast(c.ownership.waitedMillis, 1_500, "the wait for A's socket was lost with B")
        assert.isAtMost(c.ownership.waitedMillis, 3_000)
      }).pipe(Effect.provide(TestDatabase.layer)),
    30_000,
  )
  it.live(
    "renewed again after a lapse, the owner unsays its closed socket before it reconnects",
    () =>
      Effect.gen(function* () {
        const a = yield* acquire(yield* runner(dropTimings("maybe-alive")))
        yield* a.ownership.closed
        assert.isTrue(yield* a.ownership.recovered)
        // A runs again; B takes over while A's lease runs: it must wait for the gateway, not trust the old report.
        const b = yield* acquire(yield* runner(dropTimings("maybe-alive")))
        assert.isAtLeast(b.ownership.waitedMillis, 4_000, "the old report of a closed socket was trusted")
      }).pipe(Effect.provide(TestDatabase.layer)),
    30_000,
  )

  it.live(
    "the owner renews its lease on the database's clock; a superseded owner learns it by renewing",
    () =>
      Effect.gen(function* () {
        const fast: PgShardOwners.PgShardOwnersOptions = {
          shardLockExpiration: "3 seconds",
          fenceAfter: "2 seconds",
          renewInterval: "200 millis",
        }
        const a = yield* acquire(yield* runner(fast))
        // Renewed every 200 ms: the lease on the database never falls far below fenceAfter.
        for (let i = 0; i < 5; i++) {
          yield* Effect.sleep("300 millis")
          assert.isAbove((yield* epochRow)!.leaseMillis, 1_400)
        }
        // Another runner bumps the epoch by hand (no save from A needed): A's next renewal sees it.
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE vigil_shard_owners SET epoch = epoch + 1`
        const lapse = yield* a.ownership.lapsed.pipe(Effect.timeoutOption("5 seconds"))
        assert.deepStrictEqual(lapse, Option.some({ _tag: "Superseded" } as const))
      }).pipe(Effect.provide(TestDatabase.layer)),
  )

  it.effect("timings that cannot fence before the lock expires are a FencingConfigError", () =>
    Effect.gen(function* () {
      const check = (options: PgShardOwners.PgShardOwnersOptions) =>
        PgShardOwners.timings(options).pipe(
          Effect.flip,
          Effect.map((e) => e.reason),
        )
      assert.include(
        yield* check({ shardLockExpiration: "3 seconds", fenceAfter: "3 seconds" }),
        "fenceAfter (3s) must be shorter than shardLockExpiration (3s)",
      )
      assert.include(
        yield* check({ shardLockExpiration: "3 seconds", fenceAfter: "1 second", renewInterval: "1 second" }),
        "renewInterval (1s) must be positive and shorter than fenceAfter (1s)",
      )
      const error = yield* Effect.flip(PgShardOwners.timings({ shardLockExpiration: "soon" as never }))
      assert.instanceOf(error, ClusterError.FencingConfigError)
      // Defaults: 2/3 of the expiry, renewed every second.
      const defaults = yield* PgShardOwners.timings({ shardLockExpiration: "6 seconds" })
      assert.deepStrictEqual(
        [defaults.fenceAfter, defaults.renewInterval].map(Duration.toMillis),
        [4_000, 1_000],
      )
    }),
  )
})
