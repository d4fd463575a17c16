/**
 * Generated fault schedules over generated traffic, each run deterministically on the
 * in-memory transport under TestClock; every invariant must hold. CI runs 1000 schedules;
 * `CHAOS_RUNS=100000 sh scripts/dev.sh vitest run --project @vigil/testing Chaos` soaks.
 * A failure prints the schedule as JSON: paste it into the regression list below.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Chaos from "../src/Chaos.ts"

const runs = Number(process.env["CHAOS_RUNS"] ?? 1000)

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
]

describe("chaos", () => {
  it.each(regressions.map((steps, i) => [i, steps] as const))("regression schedule %i", async (_, steps) => {
    expect(await Chaos.run(steps)).toEqual([])
  })

  it(`${runs} generated schedules keep every invariant`, { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(Chaos.schedule, async (steps) => {
        const violations = await Chaos.run(steps)
        if (violations.length > 0) {
          console.error(`chaos schedule failed; replay it with Chaos.run(${JSON.stringify(steps)})`)
          console.error(violations.map((v) => `  [${v.invariant}] ${v.detail}`).join("\n"))
        }
        return violations.length === 0
      }),
      { numRuns: runs, endOnFailure: true },
    )
  })
})
