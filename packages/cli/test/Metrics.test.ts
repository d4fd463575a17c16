/**
 * `vigil demo --metrics-port N` as an operator would scrape it: the storm shows up in
 * `/metrics` while the demo runs (zombies, resumes, closes by code), in text Prometheus's
 * `promtool check metrics` accepts; `/health` answers beside it.
 */
import { spawnSync } from "node:child_process"
import { type AddressInfo, createServer, type Server } from "node:net"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as NodeProgram from "@vigil/testing/NodeProgram"
import { Effect } from "effect"
import { exitCodes } from "../src/Explain.ts"

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
        const healthAnswers = new Set<number>()
        let firstUp: { status?: string; shards?: ReadonlyArray<unknown> } | undefined
        let upBody: { status?: string; shards?: ReadonlyArray<unknown> } | undefined
        // Scrape until the demo ends (it serves only while it runs), as Prometheus would.
        while (!exited) {
          const metrics = yield* scrape(`${base}/metrics`)
          // While shards run: a scrape in the last instant of shutdown finds their series gone.
          if (metrics._tag === "Some" && metrics.value.body.includes("vigil_events_total{"))
            last = metrics.value.body
          const h = yield* scrape(`${base}/health`)
          if (h._tag === "Some") {
            healthAnswers.add(h.value.status)
            const body = JSON.parse(h.value.body)
            if (h.value.status === 200 && body.status === "up") {
              firstUp ??= body
              upBody = body
            }
          }
          yield* Effect.sleep("250 millis")
        }
        assert.strictEqual(ran?.code, 0, `every invariant held:\n${ran?.stdout}${ran?.stderr}`)
        // The provider's verdict with its snapshot: up once every shard was ready.
        assert.isTrue(healthAnswers.has(200), [...healthAnswers].join())
        assert.strictEqual(firstUp?.shards?.length, 2)
        // the last step reshards 2 → 4
        assert.strictEqual(upBody?.shards?.length, 4)
        assert.isAtLeast(series(last, "vigil_reshards_total{"), 1, last)
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

  it.live(
    "a metrics port already in use: one explained line and its own exit code",
    () =>
      Effect.gen(function* () {
        const taken = yield* Effect.acquireRelease(
          Effect.callback<Server>((resume) => {
            const server = createServer().listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
          }),
          (server) => Effect.sync(() => server.close()),
        )
        const port = (taken.address() as AddressInfo).port
        const ran = yield* Effect.flatMap(demo(port), (program) => program.exited)
        const output = `${ran.stdout}${ran.stderr}`
        assert.strictEqual(ran.code, exitCodes.MetricsPortUnavailable, output)
        assert.include(output, `vigil: cannot serve metrics on port ${port}`)
        assert.include(output, "EADDRINUSE")
        assert.include(output, "--metrics-port")
      }),
    60_000,
  )
})
