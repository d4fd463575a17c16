/**
 * Runs a TypeScript program the way its user would, with `node` in a child process, so a
 * test can check a whole program (the README's samples end in `NodeRuntime.runMain`) from
 * outside: what it printed and how it exited. Node (≥ 22.19) strips a TypeScript file's types.
 */
import { spawn } from "node:child_process"
import { Deferred, Effect, type Scope } from "effect"

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface Running {
  /** What it printed on stdout so far. */
  readonly stdout: () => string
  readonly kill: (signal: NodeJS.Signals) => void
  readonly exited: Effect.Effect<Exited>
}

export interface StartOptions {
  /**
   * Export conditions for Node's resolver (`--conditions`): Vigil's own tests pass
   * `["@vigil/source"]` to run the workspace's sources instead of the built packages.
   */
  readonly conditions?: ReadonlyArray<string> | undefined
  /** The program's arguments, after the file. */
  readonly args?: ReadonlyArray<string> | undefined
  /** Stops the program with a signal once its output shows it got far enough. */
  readonly stop?: Stop | undefined
}

export interface Stop {
  /** Sends `signal` (once) as soon as what the program printed on stdout so far satisfies this. */
  readonly when: (stdout: string) => boolean
  readonly signal: NodeJS.Signals
}

/**
 * Starts `node file …args` with only `PATH` and `env` in its environment; stopped as `stop`
 * says, and killed (SIGKILL) when the scope closes, so no program outlives its test.
 */
export const start = (
  file: string,
  env: Record<string, string>,
  options: StartOptions = {},
): Effect.Effect<Running, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const conditions = (options.conditions ?? []).map((condition) => `--conditions=${condition}`)
      const child = spawn(process.execPath, [...conditions, file, ...(options.args ?? [])], {
        env: { PATH: process.env["PATH"] ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      })
      let stdout = ""
      let stderr = ""
      let stopped = false
      child.stdout.on("data", (b) => {
        stdout += b
        if (options.stop !== undefined && !stopped && options.stop.when(stdout)) {
          stopped = true
          child.kill(options.stop.signal)
        }
      })
      child.stderr.on("data", (b) => {
        stderr += b
      })
      const closed = Deferred.makeUnsafe<Exited>()
      child.on("close", (code, signal) =>
        Deferred.doneUnsafe(closed, Effect.succeed({ code, signal, stdout, stderr })),
      )
      const running: Running = {
        stdout: () => stdout,
        kill: (signal) => child.kill(signal),
        exited: Deferred.await(closed),
      }
      return { child, running }
    }),
    ({ child }) => Effect.sync(() => child.kill("SIGKILL")),
  ).pipe(Effect.map(({ running }) => running))
