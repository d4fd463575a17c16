/**
 * The invariants themselves: each catches what it is for and passes what it must allow.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { ListenError as GatewayListenError } from "../../src/FakeGateway.ts"
import { ListenError as RestListenError } from "../../src/FakeRest.ts"
import { Invariants } from "../../src/index.ts"

const names = (violations: ReadonlyArray<Invariants.Violation>) => violations.map((v) => v.invariant)

class Refused extends Schema.TaggedError<Refused>()("Refused", {}) {}

describe("Invariants", () => {
  it("secretNeverLeaked redacts every occurrence in its report", () => {
    const [violation] = Invariants.secretNeverLeaked("s3cret", ["a s3cret and another s3cret, s3cret"])
    assert.isDefined(violation)
    assert.notInclude(violation!.detail, "s3cret")
    assert.strictEqual(violation!.detail, "found in: a <TOKEN> and another <TOKEN>, <TOKEN>")
  })

  it("text shows an error's message and fields, a status as JSON", () => {
    assert.include(Invariants.text(new Error("boom")), "boom")
    assert.include(Invariants.text({ lastError: { message: "x" } }), '"message":"x"')
  })

  it("connectionRate: one a second passes; a storm, or a burst beyond the grace, does not", () => {
    const steady = Array.from({ length: 20 }, (_, i) => i * 1000)
    assert.deepStrictEqual(Invariants.connectionRate(steady), [])
    // Two at the same instant are allowed (N + 1 in a window of one second), three are not.
    assert.deepStrictEqual(Invariants.connectionRate([0, 0, 1000]), [])
    assert.lengthOf(Invariants.connectionRate([0, 0, 999]), 1)
    assert.deepStrictEqual(names(Invariants.connectionRate([0, 1, 2])), ["at-most-one-attempt-per-second"])
    const storm = Array.from({ length: 150 }, (_, i) => i * 33)
    const [violation] = Invariants.connectionRate(storm)
    assert.match(violation!.detail, /^150 connection attempts within 4917 ms \(at most 6\)$/)
    // A quick start (reconnects within the first seconds) is allowed by the grace, not later.
    const quickStart = [0, 10, 20, 30, 2000, 3000]
    assert.deepStrictEqual(Invariants.connectionRate(quickStart, { graceMillis: 1000 }), [])
    assert.lengthOf(Invariants.connectionRate([...quickStart, 3010, 3020], { graceMillis: 1000 }), 1)
  })

  it("noConnectionAfterFatal counts only the attempts after the fatal close", () => {
    assert.deepStrictEqual(Invariants.noConnectionAfterFatal([0, 100], 100), [])
    const [violation] = Invariants.noConnectionAfterFatal([0, 100, 250, 400], 100)
    assert.strictEqual(
      violation!.detail,
      "2 connection attempt(s) after the fatal close, the first 150 ms after it",
    )
  })

  it("heapBounded compares the peak with the limit", () => {
    assert.deepStrictEqual(Invariants.heapBounded(100, 100 + 1024, 2048), [])
    assert.deepStrictEqual(names(Invariants.heapBounded(100, 100 + 4096, 2048)), ["bounded-memory"])
  })

  it.live("heapPeak sees an allocation that is gone again", () =>
    Effect.gen(function* () {
      const sampler = yield* Invariants.heapPeak(5)
      const before = process.memoryUsage().heapUsed
      let held: Array<Array<number>> | undefined = Array.from({ length: 200 }, () =>
        new Array(50_000).fill(1),
      )
      yield* Effect.sleep(50)
      assert.lengthOf(held, 200)
      held = undefined
      assert.isAbove(sampler.peak() - before, 30 * 1024 * 1024)
    }),
  )

  it.live("commandsSettle: success and typed failure settle; a hang and a defect do not", () =>
    Effect.gen(function* () {
      const ok = yield* Effect.forkChild(Effect.succeed(1))
      const typed = yield* Effect.forkChild(Effect.fail(new Refused()))
      const hangs = yield* Effect.forkChild(Effect.never)
      const dies = yield* Effect.forkChild(Effect.die("bug"))
      const violations = yield* Invariants.commandsSettle(
        [
          { label: "ok", fiber: ok },
          { label: "typed", fiber: typed },
          { label: "hangs", fiber: hangs },
          { label: "dies", fiber: dies },
        ],
        200,
      )
      assert.deepStrictEqual(
        violations.map((v) => v.detail.split(" ").slice(0, 2).join(" ")),
        ["hangs still", "dies died:"],
      )
    }),
  )

  it("one ListenError: FakeGateway's and FakeRest's are the same class", () => {
    assert.strictEqual(GatewayListenError, RestListenError)
    const error = new GatewayListenError({ server: "FakeRest", port: 0, detail: "EADDRINUSE" })
    assert.strictEqual(error.message, "FakeRest cannot listen on 127.0.0.1:0: EADDRINUSE")
  })
})

describe("Invariants.sendRate", () => {
  it("120 frames a minute pass; the 121st inside the minute does not", () => {
    const limit = { frames: 120, windowMillis: 60_000 }
    const steady = Array.from({ length: 240 }, (_, i) => i * 500)
    assert.deepStrictEqual(Invariants.sendRate(1, steady, limit), [])
    const [violation] = Invariants.sendRate(2, [...steady.slice(0, 120), 59_999], limit)
    assert.strictEqual(
      violation!.detail,
      "connection 2: 121 frames within 59999 ms (at most 120 per 60000 ms)",
    )
  })
})
