/**
 * `vigil demo --metrics-port N` as an operator would scrape it: the storm shows up in
 * `/metrics` while the demo runs (zombies, resumes, closes by code), in text Prometheus's
 * `promtool check metrics` accepts; `/health` answers beside it.
 */
import { spawnSync } from "node:child_process"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as NodeProgram from "@vigil/testing/NodeProgram"
import { Effect } from "effect"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const promtool = spawnSync("promtool", ["--version"]).status === 0
if (!promtool) {
  console.warn("cli Metrics.test: promtool absent (Debian package `prometheus`): the format check is skipped")
}

/** A port free on 127.0.0.1 right now. */
const freePort = Effect.callback<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Runs the demo from the sources; killed with the test's scope. */
const demo = (port: number) =>
  NodeProgram.start(
    main,
    {},
    {
      conditions: ["@vigil/source"],
      args: ["demo", "--heartbeat", "500", "--burst", "500", "--metrics-port", String(port)],
    },
  )

const scrape = (url: string) =>
  Effect.tryPromise(async () => {
    const response = await fetch(url)
    return { status: response.status, body: await response.text() }
  }).pipe(Effect.option)

const series = (body: string, name: string) =>
  body
    .split("\n")
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)

describe("vigil demo --metrics-port", () => {
  it.live(
    "the storm shows up in /metrics, valid Prometheus text; /health answers",
    () =>
      Effect.gen(function* () {
        const port = yield* freePort
        const base = `http://127.0.0.1:${port}`
        const program = yield* demo(port)
        let exited = false
        let ran: NodeProgram.Exited | undefined
        yield* Effect.forkChild(
          Effect.map(program.exited, (r) => {
            ran = r
            exited = true
          }),
        )
        let last = ""
        let health: number | undefined
        // Scrape until the demo ends (it serves only while it runs), as Prometheus would.
        while (!exited) {
          const metrics = yield* scrape(`${base}/metrics`)
          if (metrics._tag === "Some") last = metrics.value.body
          const h = yield* scrape(`${base}/health`)
          if (h._tag === "Some") health = h.value.status
          yield* Effect.sleep("250 millis")
        }
        assert.strictEqual(ran?.code, 0, `every invariant held:\n${ran?.stdout}${ran?.stderr}`)
        assert.strictEqual(health, 200)
        assert.isAtLeast(series(last, "vigil_zombies_total"), 1, last)
        assert.isAtLeast(series(last, "vigil_resumes_total"), 3, last)
        assert.isAtLeast(series(last, "vigil_identifies_total"), 2, last)
        assert.isAtLeast(series(last, "vigil_closes_total{"), 1, last)
        assert.isAtLeast(series(last, "vigil_events_total{"), 100, last)
        if (promtool) {
          const check = spawnSync("promtool", ["check", "metrics"], { input: last, encoding: "utf8" })
          assert.strictEqual(check.status, 0, `${check.stdout}${check.stderr}`)
        }
      }),
    60_000,
  )
})
