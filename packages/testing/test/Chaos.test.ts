/**
 * Generated fault schedules over generated traffic, each run deterministically on the
 * in-memory transport under TestClock; every invariant must hold. CI runs 1000 regular
 * schedules and 1000 with a hostile server mixed in; `CHAOS_RUNS=100000 sh scripts/dev.sh
 * vitest run --project @vigil/testing Chaos` soaks (that many of each).
 * A failure prints the schedule as JSON: paste it into the regression list below.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Chaos from "../src/Chaos.ts"

const runs = Number(process.env["CHAOS_RUNS"] ?? 1000)
// A schedule takes ~25–60 ms on a quiet machine; allow for a loaded one at any CHAOS_RUNS.
const timeout = 600_000 + runs * 250

const property = (schedule: typeof Chaos.schedule) =>
  fc.asyncProperty(schedule, async (steps) => {
    const violations = await Chaos.run(steps)
    if (violations.length > 0) {
      console.error(`chaos schedule failed; replay it with Chaos.run(${JSON.stringify(steps)})`)
      console.error(violations.map((v) => `  [${v.invariant}] ${v.detail}`).join("\n"))
    }
    return violations.length === 0
  })

/** Schedules that once failed (or that pin down a tricky interleaving), replayed every run. */
const regressions: ReadonlyArray<ReadonlyArray<Chaos.Step>> = [
  // zombie, then the resume is refused until the resume-loop breaker identifies afresh
  [
    { kind: "emit", count: 5 },
    { kind: "acks", on: false },
    { kind: "rejectResumes", on: true },
    { kind: "advance", millis: 120_000 },
    { kind: "emit", count: 3 },
  ],
  // the network is down while commands wait; then a non-resumable invalid session
  [
    { kind: "command" },
    { kind: "connectFails", times: 4 },
    { kind: "drop" },
    { kind: "command" },
    { kind: "advance", millis: 60_000 },
    { kind: "invalidSession", resumable: false },
    { kind: "emit", count: 2 },
  ],
  // a heartbeat request in the middle of a burst, then a close that ends the session
  [
    { kind: "emit", count: 20 },
    { kind: "requestHeartbeat" },
    { kind: "close", code: 4009 },
    { kind: "emit", count: 1 },
  ],
  // a command written right after READY, just before the server ends the connection: the
  // server still reads it (the fake once stopped reading at its own close and lost it)
  [
    { kind: "endAfterHandshake", ending: { close: 4009 } },
    { kind: "emit", count: 2 },
    { kind: "invalidSession", resumable: false },
    { kind: "command" },
    { kind: "advance", millis: 74_122 },
    { kind: "invalidSession", resumable: true },
    { kind: "command" },
    { kind: "endAfterHandshake", ending: "malformed" },
    { kind: "advance", millis: 69_318 },
  ],
]

describe("chaos", () => {
  it.each(regressions.map((steps, i) => [i, steps] as const))("regression schedule %i", async (_, steps) => {
    assert.deepStrictEqual(await Chaos.run(steps), [])
  })

  it(`${runs} generated schedules keep every invariant`, { timeout }, async () => {
    await fc.assert(property(Chaos.schedule), { numRuns: runs, endOnFailure: true })
  })

  it(`${runs} generated schedules with a hostile server keep every invariant`, {
    timeout,
  }, async () => {
    await fc.assert(property(Chaos.hostileSchedule), { numRuns: runs, endOnFailure: true })
  })
})
