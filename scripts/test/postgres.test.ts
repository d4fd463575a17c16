/**
 * scripts/postgres.sh: DATABASE_URL wins; else a cluster is started (the machine's, or a
 * private one) and a URL that accepts the test role is printed, the same on every call.
 */
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { onTestFinished } from "vitest"

const script = join(import.meta.dirname, "..", "postgres.sh")

const run = (env: Record<string, string | undefined>) => {
  const { DATABASE_URL: _, ...rest } = process.env
  return execFileSync("sh", [script], { env: { ...rest, ...env }, encoding: "utf8", timeout: 60_000 }).trim()
}

/** `SELECT 1` through psql as the URL's user: proves address, role and password. */
const answers = (url: string) =>
  execFileSync("psql", [url, "-Atc", "SELECT 1"], { encoding: "utf8", timeout: 30_000 }).trim() === "1"

describe("scripts/postgres.sh", () => {
  it("a DATABASE_URL that is set is used as it is, nothing started", () => {
    assert.strictEqual(
      run({ DATABASE_URL: "postgres://u:p@db.example:6543/x" }),
      "postgres://u:p@db.example:6543/x",
    )
  })

  it("without one, the machine's cluster (or a private one) answers on the URL it prints, every call", () => {
    const first = run({})
    assert.match(first, /^postgres:\/\/vigil:vigil@127\.0\.0\.1:\d+\/vigil$/)
    assert.strictEqual(run({}), first)
    assert.isTrue(answers(first))
  })

  it("a private cluster: initdb in TMPDIR on a free port, kept for the next call", () => {
    const dir = mkdtempSync(join(tmpdir(), "vigil-pg-test-"))
    chmodSync(dir, 0o755) // as root the cluster runs as `postgres`, which must reach it
    const env = { VIGIL_POSTGRES: "private", TMPDIR: dir }
    onTestFinished(() => {
      // Stops the cluster this test started (pg_ctl refuses root: as `postgres` then).
      const data = join(dir, `vigil-postgres-${process.getuid?.()}`, "data")
      if (!existsSync(data)) return rmSync(dir, { recursive: true, force: true })
      const stop = `"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl" -D "${data}" -m immediate stop`
      execFileSync("sh", ["-c", process.getuid?.() === 0 ? `runuser -u postgres -- sh -c '${stop}'` : stop])
      rmSync(dir, { recursive: true, force: true })
    })
    const first = run(env)
    assert.match(first, /^postgres:\/\/vigil:vigil@127\.0\.0\.1:\d+\/vigil$/)
    assert.strictEqual(run(env), first)
    assert.isTrue(answers(first))
  }, 60_000)
})
