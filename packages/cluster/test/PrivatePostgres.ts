/**
 * A PostgreSQL server of one test's own, to stop and start again (the shared test server is
 * used by test files running in parallel): `scripts/postgres.sh` with `VIGIL_POSTGRES=private`
 * in a temporary directory, stopped and removed when the test's scope closes. As root the
 * server runs as the `postgres` user (initdb refuses root), as the script does.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"

const script = path.join(import.meta.dirname, "..", "..", "..", "scripts", "postgres.sh")

const bindir = (): string | undefined => {
  try {
    return execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim()
  } catch {
    const versions = fs.existsSync("/usr/lib/postgresql") ? fs.readdirSync("/usr/lib/postgresql").sort() : []
    const last = versions.at(-1)
    return last === undefined ? undefined : `/usr/lib/postgresql/${last}/bin`
  }
}

const bin = bindir()
const asRoot = process.getuid?.() === 0

/** Whether this machine can run a private server (PostgreSQL installed; as root, a postgres user). */
export const available: boolean =
  bin !== undefined &&
  fs.existsSync(path.join(bin, "initdb")) &&
  (!asRoot ||
    (() => {
      try {
        execFileSync("id", ["postgres"], { stdio: "ignore" })
        return true
      } catch {
        return false
      }
    })())

const pgCtl = (dataDir: string, args: ReadonlyArray<string>) => {
  const command = [path.join(bin!, "pg_ctl"), "-D", dataDir, ...args]
  if (asRoot) execFileSync("runuser", ["-u", "postgres", "--", ...command], { stdio: "ignore" })
  else execFileSync(command[0]!, command.slice(1), { stdio: "ignore" })
}

/** A private server; `down` stops it (fast: connections dropped), `up` starts it on the same port. */
export const restartable: Effect.Effect<
  { readonly url: string; readonly down: Effect.Effect<void>; readonly up: Effect.Effect<void> },
  never,
  Scope.Scope
> = Effect.acquireRelease(
  Effect.sync(() => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vigil-pg-restart-"))
    fs.chmodSync(tmp, 0o755) // the postgres user makes its directory in here
    const url = execFileSync("sh", [script], {
      env: { ...process.env, DATABASE_URL: "", VIGIL_POSTGRES: "private", TMPDIR: tmp },
      encoding: "utf8",
    }).trim()
    const dir = path.join(tmp, `vigil-postgres-${process.getuid?.() ?? 0}`)
    const port = fs.readFileSync(path.join(dir, "port"), "utf8").trim()
    const data = path.join(dir, "data")
    return {
      tmp,
      url,
      down: Effect.sync(() => pgCtl(data, ["stop", "-m", "fast", "-w", "-t", "30"])),
      up: Effect.sync(() =>
        pgCtl(data, [
          "start",
          "-w",
          "-t",
          "30",
          "-l",
          path.join(data, "server.log"),
          "-o",
          `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
        ]),
      ),
      data,
    }
  }),
  (server) =>
    Effect.sync(() => {
      try {
        pgCtl(server.data, ["stop", "-m", "immediate", "-w", "-t", "30"])
      } catch {
        // already stopped
      }
      fs.rmSync(server.tmp, { recursive: true, force: true })
    }),
)
