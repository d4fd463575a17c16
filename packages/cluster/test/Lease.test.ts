/**
 * The lease a runner holds on a shard, under TestClock: it lapses exactly `fenceAfter` after
 * the last successful renewal was *sent* (never later, whatever the database does: failing,
 * hanging, answering late), at once when a renewal says a newer epoch owns the shard, and it
 * recovers only if renewed again under the same epoch.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as Lease from "../src/internal/Lease.ts"

type Mode = "ok" | "fail" | "hang" | "superseded"

/** A lease whose renewals answer as `mode` says; counts the attempts. */
const lease = Effect.fnUntraced(function* (fenceAfter = 2_000, renewInterval = 500) {
  const state = { mode: "ok" as Mode, attempts: 0 }
  const renew = Effect.suspend((): Effect.Effect<Lease.Renewal, string> => {
    state.attempts++
    switch (state.mode) {
      case "ok":
        return Effect.succeed("Renewed")
      case "fail":
        return Effect.fail("connection refused")
      case "hang":
        return Effect.never
      case "superseded":
        return Effect.succeed("Superseded")
    }
  })
  const made = yield* Lease.make({
    renew,
    renewInterval: Duration.millis(renewInterval),
    fenceAfter: Duration.millis(fenceAfter),
    since: 0,
  })
  const lapsed = yield* Effect.forkChild(made.lapsed)
  return { lease: made, state, lapsed }
})

describe("Lease", () => {
  it.effect("renewed every interval, it holds for as long as the renewals succeed", () =>
    Effect.gen(function* () {
      const { lease: l, state, lapsed } = yield* lease()
      yield* TestClock.adjust("60 seconds")
      assert.isTrue(l.valid())
      assert.isUndefined(lapsed.pollUnsafe())
      // One renewal per 500 ms, the first at once.
      assert.strictEqual(state.attempts, 121)
    }),
  )

  for (const mode of ["fail", "hang"] as const) {
    it.effect(`renewals that ${mode}: it lapses exactly fenceAfter after the last good one was sent`, () =>
      Effect.gen(function* () {
        const { lease: l, state, lapsed } = yield* lease()
        yield* TestClock.adjust(10_000) // last good renewal sent at 10 000
        state.mode = mode
        yield* TestClock.adjust(1_999)
        assert.isTrue(l.valid(), "lapsed early")
        assert.isUndefined(lapsed.pollUnsafe())
        yield* TestClock.adjust(1)
        assert.isFalse(l.valid(), "still valid at fenceAfter")
        assert.deepStrictEqual(yield* Fiber.join(lapsed), { _tag: "Expired", lastRenewedMillisAgo: 2_000 })
      }),
    )
  }

  it.effect("valid() turns false on time even before the watchdog fiber runs", () =>
    Effect.gen(function* () {
      const { lease: l, state } = yield* lease()
      state.mode = "hang"
      // The hot path reads the clock itself: no fiber has to wake for it.
      yield* TestClock.setTime(2_000)
      assert.isFalse(l.valid())
    }),
  )

  it.effect("a renewal answered 'superseded' ends it at once, for good", () =>
    Effect.gen(function* () {
      const { lease: l, state, lapsed } = yield* lease()
      yield* TestClock.adjust(1_000)
      state.mode = "superseded"
      yield* TestClock.adjust(500) // the next renewal
      assert.isTrue(l.superseded())
      assert.isFalse(l.valid())
      assert.deepStrictEqual(yield* Fiber.join(lapsed), { _tag: "Superseded" })
      const attempts = state.attempts
      state.mode = "ok"
      yield* TestClock.adjust(10_000)
      assert.strictEqual(state.attempts, attempts, "renewals went on after the lease was superseded")
      assert.isFalse(yield* l.recovered)
    }),
  )

  it.effect("a refused write supersedes it without waiting for a renewal", () =>
    Effect.gen(function* () {
      const { lease: l, lapsed } = yield* lease()
      yield* l.supersede
      assert.isFalse(l.valid())
      assert.deepStrictEqual(yield* Fiber.join(lapsed), { _tag: "Superseded" })
    }),
  )

  it.effect("after an expiry, renewed again under the same epoch: recovered, and it holds again", () =>
    Effect.gen(function* () {
      const { lease: l, state, lapsed } = yield* lease()
      state.mode = "fail"
      yield* TestClock.adjust(2_500)
      assert.strictEqual((yield* Fiber.join(lapsed))._tag, "Expired")
      const recovered = yield* Effect.forkChild(l.recovered)
      yield* TestClock.adjust(5_000)
      assert.isUndefined(recovered.pollUnsafe(), "recovered while the renewals still fail")
      state.mode = "ok"
      yield* TestClock.adjust(1_000)
      assert.isTrue(yield* Fiber.join(recovered))
      assert.isTrue(l.valid())
      // A new round: it lapses again only when the renewals stop again.
      const again = yield* Effect.forkChild(l.lapsed)
      yield* TestClock.adjust(10_000)
      assert.isUndefined(again.pollUnsafe())
    }),
  )

  it.effect("after an expiry, superseded meanwhile: not recovered", () =>
    Effect.gen(function* () {
      const { lease: l, state } = yield* lease()
      state.mode = "fail"
      yield* TestClock.adjust(2_500)
      const recovered = yield* Effect.forkChild(l.recovered)
      state.mode = "superseded"
      yield* TestClock.adjust(1_000)
      assert.isFalse(yield* Fiber.join(recovered))
    }),
  )
})
