/**
 * `TestClock.adjust` waits for the work that the timers it fires set off, but not for
 * work a test starts directly (a server frame pushed into the in-memory transport wakes the
 * client's reader, which answers, which wakes the server script, …). `settle` lets every
 * such chain run to its end without moving the clock.
 */
import { Effect } from "effect"
import { TestClock } from "effect/testing"

/** Yields enough scheduler rounds for chains of a few hundred steps, then flushes timers due now. */
export const settle: Effect.Effect<void> = Effect.gen(function* () {
  for (let i = 0; i < 300; i++) yield* Effect.yieldNow
  yield* TestClock.adjust(0)
})

/** Moves the clock, then lets what the last wake-ups and test actions started finish. */
export const advance = (millis: number): Effect.Effect<void> =>
  Effect.andThen(TestClock.adjust(millis), settle)
