/**
 * NodeProgram runs a program as its user would: its arguments after the file, and a stop rule
 * that signals it once its output shows it got far enough.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeProgram from "../src/NodeProgram.ts"

// Prints its arguments, then "ready" a moment later, then runs until a signal ends it.
const program = `
console.log("args:", process.argv.slice(2).join(" "))
setTimeout(() => console.log("ready"), 200)
setInterval(() => {}, 1000)
`

const programFile = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "vigil-node-program-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
).pipe(
  Effect.map((dir) => {
    const file = path.join(dir, "program.mjs")
    fs.writeFileSync(file, program)
    return file
  }),
)

describe("NodeProgram.start", () => {
  it.live("passes the arguments; `stop` signals the program once its output matches", () =>
    Effect.gen(function* () {
      const file = yield* programFile
      const running = yield* NodeProgram.start(
        file,
        {},
        { args: ["one", "two"], stop: { when: (out) => out.includes("ready"), signal: "SIGTERM" } },
      )
      const exited = yield* running.exited.pipe(Effect.timeout("30 seconds"))
      assert.strictEqual(exited.signal, "SIGTERM")
      assert.include(exited.stdout, "args: one two\n")
      assert.include(exited.stdout, "ready")
    }),
  )
})
