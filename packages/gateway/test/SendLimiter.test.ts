/** The per-connection send window: its reserve, its margin, and what the server counts. */
import { assert, describe, it } from "@effect/vitest"
import { Protocol, SendLimiter } from "@vigil/gateway"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

describe("SendLimiter.reserveFor", () => {
  const table: Array<[interval: number, reserve: number, commands: number]> = [
    [41_250, 4, 106], // Discord's interval: two beats per window, plus the handshake's room
    [60_000, 4, 106],
    [5_000, 15, 95],
    [1_000, 55, 55], // the floor a connection honours: capped at half the budget
    [250, 55, 55], // a fake's short interval: commands still get half the budget
    [1, 55, 55],
  ]
  it.each(table)("interval %i ms: reserve %i, %i commands per window", (interval, reserve, commands) => {
    assert.strictEqual(SendLimiter.reserveFor(interval), reserve)
    assert.strictEqual(SendLimiter.make({ heartbeatIntervalMillis: interval }).commandBudget, commands)
  })

  it("keeps a margin under the server's limit", () => {
    assert.strictEqual(SendLimiter.defaultBudget, Protocol.sendLimit.commands - 10)
  })
})

/** Sends `count` commands as fast as the limiter allows; returns when each write completed. */
const flood = (limiter: SendLimiter.SendLimiter, count: number) =>
  Effect.gen(function* () {
    const written: Array<number> = []
    for (let n = 0; n < count; n++) {
      yield* limiter.acquire
      yield* limiter.written
      written.push(yield* Clock.currentTimeMillis)
    }
    return written
  })

/** Beats every `interval` through the limiter, as a connection does; when each was written. */
const heartbeats = (limiter: SendLimiter.SendLimiter, interval: number) =>
  Effect.gen(function* () {
    const beats: Array<number> = []
    const heartbeat = yield* Effect.forkChild(
      Effect.forever(
        Effect.gen(function* () {
          yield* limiter.record
          yield* limiter.written
          beats.push(yield* Clock.currentTimeMillis)
          yield* Effect.sleep(interval)
        }),
      ),
    )
    return { beats, heartbeat }
  })

/** The most sends that arrive within any `window` ms. */
const busiestWindow = (arrivals: ReadonlyArray<number>, window = Protocol.sendLimit.windowMillis) => {
  const sorted = [...arrivals].sort((a, b) => a - b)
  let most = 0
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= window) j++
    most = Math.max(most, i - j + 1)
  }
  return most
}

describe("SendLimiter: what the server counts", () => {
  it.effect("with latency varying by up to 4 s, the server never counts more than 120 in 60 s", () =>
    Effect.gen(function* () {
      const interval = 41_250
      const limiter = SendLimiter.make({ heartbeatIntervalMillis: interval })
      const { beats, heartbeat } = yield* heartbeats(limiter, interval)
      const commands = yield* Effect.forkChild(flood(limiter, 600))
      yield* TestClock.adjust(400_000)
      const written = yield* Fiber.join(commands)
      yield* Fiber.interrupt(heartbeat)
      // The worst case for the server: alternate sends arrive at once and 4 s late, so the
      // bursts at both ends of our window land in one of its windows.
      const sends = [...written, ...beats].sort((a, b) => a - b)
      const arrivals = sends.map((t, i) => t + (i % 2 === 0 ? 0 : 4_000))
      assert.isAtMost(busiestWindow(arrivals), Protocol.sendLimit.commands)
      assert.isAtMost(busiestWindow(sends), SendLimiter.defaultBudget)
      assert.strictEqual(written.length, 600, "commands kept moving")
    }),
  )

  it.effect("heartbeats beyond the reserve (1 s interval) slow commands down, never starve them", () =>
    Effect.gen(function* () {
      const interval = 1_000
      const limiter = SendLimiter.make({ heartbeatIntervalMillis: interval })
      const { beats, heartbeat } = yield* heartbeats(limiter, interval)
      // Let the heartbeats fill the window past the reserve (65 of them) before commands start.
      yield* TestClock.adjust(70_000)
      const commands = yield* Effect.forkChild(flood(limiter, 100))
      yield* TestClock.adjust(300_000)
      const written = yield* Fiber.join(commands)
      yield* Fiber.interrupt(heartbeat)
      assert.strictEqual(written.length, 100, "commands kept moving")
      assert.isAtMost(busiestWindow([...written, ...beats]), SendLimiter.defaultBudget)
    }),
  )

  it.effect("a send holds its place from when it completed, not when it was admitted", () =>
    Effect.gen(function* () {
      // A tiny window for clarity: budget 10, reserve min(1000/60000 + 2, 5) = 3: 7 commands.
      const limiter = SendLimiter.make({ heartbeatIntervalMillis: 60_000, budget: 10, windowMillis: 1_000 })
      assert.strictEqual(limiter.commandBudget, 7)
      // Seven commands admitted at once, their writes complete at 500 ms: the 8th waits for
      // the first to leave the window, 1 s after it *completed*, not after it was admitted.
      for (let n = 0; n < 7; n++) yield* limiter.acquire
      const eighth = yield* Effect.forkChild(Effect.andThen(limiter.acquire, Clock.currentTimeMillis))
      yield* TestClock.adjust(500)
      for (let n = 0; n < 7; n++) yield* limiter.written
      yield* TestClock.adjust(999)
      assert.isUndefined(eighth.pollUnsafe())
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* Fiber.join(eighth), 1_500)
    }),
  )

  it.effect("tryAcquire admits only while a command could go without waiting", () =>
    Effect.gen(function* () {
      const limiter = SendLimiter.make({ heartbeatIntervalMillis: 60_000, budget: 10, windowMillis: 1_000 })
      const admitted: Array<boolean> = []
      for (let n = 0; n < 9; n++) {
        const ok = yield* limiter.tryAcquire
        if (ok) yield* limiter.written
        admitted.push(ok)
      }
      assert.deepStrictEqual(admitted, [true, true, true, true, true, true, true, false, false])
      yield* TestClock.adjust(1_000)
      assert.isTrue(yield* limiter.tryAcquire)
    }),
  )
})
