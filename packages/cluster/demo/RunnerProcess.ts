/**
 * A `runner.ts` child process seen from outside: what it printed (each line with the time it
 * arrived), the shards it started and the events it handled, and its stdin commands. Killed
 * (SIGKILL) when the scope that started it closes, so no runner outlives its demo or test.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import type * as FakeGateway from "@vigil/testing/FakeGateway"
import { Effect, Fiber } from "effect"

export const program = path.join(import.meta.dirname, "runner.ts")

export interface Line {
  readonly at: number
  readonly text: string
}

export interface RunnerProcess {
  readonly name: string
  readonly port: number
  readonly child: ChildProcess
  readonly lines: Array<Line>
  readonly stderr: () => string
  readonly joined: () => boolean
  readonly exited: () => boolean
  /** When each shard started here, in order. */
  readonly starts: (shard?: number) => ReadonlyArray<Line>
  /** Every MESSAGE_CREATE handled here, as `[shard, seq, when]`. */
  readonly events: () => ReadonlyArray<readonly [number, number, number]>
  /** Sends a stdin command (`presence <shard>`, `health`) and waits for its reply's text. */
  readonly request: (command: string, argument?: string) => Effect.Effect<string>
}

export const freePort = Effect.promise(
  () =>
    new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = (server.address() as net.AddressInfo) ?? { port: 0 }
        server.close(() => resolve(port))
      })
    }),
)

let requests = 0

export const start = (options: {
  readonly name: string
  readonly port: number
  readonly env: Record<string, string>
  /** Another runner program (a test's fixture). Default `runner.ts`. */
  readonly program?: string | undefined
}) =>
  Effect.acquireRelease(
    Effect.sync((): RunnerProcess => {
      const child = spawn(process.execPath, ["--conditions=@vigil/source", options.program ?? program], {
        env: { ...process.env, ...options.env, RUNNER_PORT: String(options.port) },
        stdio: ["pipe", "pipe", "pipe"],
      })
      const lines: Array<Line> = []
      let rest = ""
      let stderr = ""
      child.stdout?.on("data", (chunk) => {
        const parts = (rest + chunk).split("\n")
        rest = parts.pop() ?? ""
        const at = Date.now()
        for (const text of parts) lines.push({ at, text })
      })
      // The engine's warnings after a kill are expected noise; kept for a failure's message.
      child.stderr?.on("data", (chunk) => {
        stderr = (stderr + chunk).slice(-4_000)
      })
      child.stdin?.on("error", () => {})
      const request = (command: string, argument = "") =>
        Effect.gen(function* () {
          const id = String(++requests)
          child.stdin?.write(`${command} ${id} ${argument}\n`)
          const prefix = `reply ${id} `
          for (;;) {
            const reply = lines.find((line) => line.text.startsWith(prefix))
            if (reply) return reply.text.slice(prefix.length)
            if (child.exitCode !== null || child.signalCode !== null) return "error exited"
            yield* Effect.sleep(10)
          }
        })
      return {
        name: options.name,
        port: options.port,
        child,
        lines,
        stderr: () => stderr,
        joined: () => lines.some((line) => line.text.startsWith("joined")),
        exited: () => child.exitCode !== null || child.signalCode !== null,
        starts: (shard) =>
          lines.filter(
            (line) =>
              line.text.startsWith("started ") && (shard === undefined || line.text === `started ${shard}`),
          ),
        events: () =>
          lines
            .filter((line) => line.text.startsWith("event ") && line.text.endsWith(" MESSAGE_CREATE"))
            .map((line) => {
              const [, shard, seq] = line.text.split(" ")
              return [Number(shard), Number(seq), line.at] as const
            }),
        request,
      }
    }),
    (runner) => Effect.sync(() => runner.exited() || runner.child.kill("SIGKILL")),
  )

/**
 * MESSAGE_CREATEs on every shard, `perSecond` each, until `stop` (which waits for the last
 * ones out); each sent one recorded as `[shard, seq]`, in the order the gateway sent them.
 */
export const trafficOnEveryShard = (
  gateway: FakeGateway.FakeGatewayService,
  shards: number,
  perSecond: number,
) =>
  Effect.gen(function* () {
    const sent: Array<readonly [number, number]> = []
    let on = true
    const fibers = yield* Effect.forEach(
      Array.from({ length: shards }, (_, shard) => shard),
      (shard) =>
        Effect.forkScoped(
          Effect.whileLoop({
            while: () => on,
            body: () => gateway.emit({ shard }, { count: 5, perSecond }).pipe(Effect.orDie),
            step: (seqs) => {
              for (const seq of seqs) sent.push([shard, seq])
            },
          }),
        ),
    )
    const stop = Effect.suspend(() => {
      on = false
      return Effect.forEach(fibers, Fiber.join, { discard: true })
    })
    return { sent, stop }
  })

/** Every shard of `shards` on an open, authenticated socket, one socket each. */
export const everyShardUp = (gateway: FakeGateway.FakeGatewayService, shards: number) =>
  Effect.map(gateway.connections, (all) => {
    const open = all.filter((c) => c.state === "open" && c.authenticated)
    return open.length === shards && new Set(open.map((c) => c.shard?.[0])).size === shards
  })

/** An event as `shard/seq`, the key sent and handled events are compared by. */
export const eventKey = ([shard, seq]: readonly [number, number, number?]): string => `${shard}/${seq}`

/** The keys of every MESSAGE_CREATE handled across `runners`, repeats included. */
export const handledKeys = (runners: ReadonlyArray<RunnerProcess>): Array<string> =>
  runners.flatMap((r) => r.events().map(eventKey))
