/** The identify throttle's spacing, on the TestClock: the window plus the margin for latency jitter. */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle } from "@vigil/gateway"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

/** When each of three turns of bucket 0 is granted, in milliseconds after the first. */
const grants = (options: IdentifyThrottle.IdentifyThrottleOptions) =>
  Effect.gen(function* () {
    const throttle = yield* IdentifyThrottle.make(options)
    const times: Array<number> = []
    const fiber = yield* Effect.forkChild(
      Effect.forEach([0, 0, 0], (shard) =>
        Effect.andThen(
          throttle.wait(shard),
          Effect.map(Clock.currentTimeMillis, (now) => times.push(now)),
        ),
      ),
    )
    yield* TestClock.adjust("20 seconds")
    yield* Fiber.join(fiber)
    return times.map((time) => time - times[0]!)
  })

describe("IdentifyThrottle", () => {
  it.effect("turns of one bucket are the 5 s window plus 250 ms apart by default", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* grants({ maxConcurrency: 1 }), [0, 5_250, 10_500])
    }),
  )

  it.effect("the margin is configurable, down to none", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* grants({ maxConcurrency: 1, marginMillis: 1_000 }), [0, 6_000, 12_000])
      assert.deepStrictEqual(yield* grants({ maxConcurrency: 1, marginMillis: 0 }), [0, 5_000, 10_000])
    }),
  )
})
