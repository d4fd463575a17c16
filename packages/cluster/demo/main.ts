/**
 * `npm run demo:cluster` (scripts/dev.sh starts PostgreSQL when DATABASE_URL is not set):
 * runs `ClusterDemo` and exits 0 only if it held. `--shards N` (default 6); `--timings default`
 * runs the runners on `ClusterRunner.defaultTimings` (lock expiry 6 s) instead of the fast ones.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as ClusterDemo from "./ClusterDemo.ts"

const argument = (name: string) => {
  const at = process.argv.indexOf(name)
  return at === -1 ? undefined : process.argv[at + 1]
}
const shards = argument("--shards") === undefined ? undefined : Number(argument("--shards"))
const timings = argument("--timings") === "default" ? "default" : "fast"
const databaseUrl = process.env["DATABASE_URL"] ?? ""

if (databaseUrl === "") {
  process.stderr.write(
    "demo:cluster needs DATABASE_URL (run it as `npm run demo:cluster`: it starts PostgreSQL)\n",
  )
  process.exitCode = 2
} else {
  ClusterDemo.run({ databaseUrl, shards, timings }).pipe(
    Effect.flatMap((summary) =>
      Effect.sync(() => {
        process.exitCode = summary.ok ? 0 : 1
      }),
    ),
    Effect.catchDefect((defect) =>
      Effect.sync(() => {
        process.stderr.write(
          `demo:cluster failed: ${defect instanceof Error ? defect.message : String(defect)}\n`,
        )
        process.exitCode = 1
      }),
    ),
    NodeRuntime.runMain,
  )
}
