/**
 * For tests on real sockets and real time: wait until a condition holds, polling every
 * 10 ms, and fail loudly (a defect naming what was awaited) when it does not in time.
 * TestClock tests have no need of it: `Settle` decides their time.
 */
import { Duration, Effect } from "effect"

export type Check = (() => boolean) | Effect.Effect<boolean>

export const eventually = (check: Check, what: string, within: Duration.Input = Duration.seconds(5)) =>
  Effect.gen(function* () {
    const deadline = Duration.toMillis(within)
    for (let waited = 0; ; waited += 10) {
      if (Effect.isEffect(check) ? yield* check : check()) return
      if (waited >= deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(10)
    }
  })
