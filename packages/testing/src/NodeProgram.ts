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
}

/**
 * Starts `node file` with only `PATH` and `env` in its environment; killed (SIGKILL) when the
 * scope closes, so no program outlives its test.
 */
export const start = (
  file: string,
  env: Record<string, string>,
  options: StartOptions = {},
): Effect.Effect<Running, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const conditions = (options.conditions ?? []).map((condition) => `--conditions=${condition}`)
      const child = spawn(process.execPath, [...conditions, file], {
        env: { PATH: process.env["PATH"] ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (b) => {
        stdout += b
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
