/**
 * The runner program (`demo/runner.ts`, on `ClusterRunner`) as real processes:
 * - two runners: the one that does not hold the shard sends it a presence update, which
 *   arrives on the holder's gateway socket, and a member request its answer (`ShardCommands`), and reads the cluster's health,
 *   which names the holder, its state and latency (`ClusterHealth`);
 * - bad input: a wrong DATABASE_URL, a database that refuses, a runner address in use, each
 *   a clear message and exit code 2 within seconds, never a hang.
 */
import * as net from "node:net"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as NodeProgram from "@vigil/testing/NodeProgram"
import * as Recording from "@vigil/testing/Recording"
import { Effect, Redacted } from "effect"
import * as RunnerProcess from "../demo/RunnerProcess.ts"
import * as TestDatabase from "./TestDatabase.ts"

const token = "cluster-runner-test-token"
const guild = "81384788765712384"

const envFor = (databaseUrl: string, gatewayUrl: string) => ({
  DATABASE_URL: databaseUrl,
  GATEWAY_URL: gatewayUrl,
  TOKEN: token,
  SHARDS: "1",
})

describe("ClusterRunner on two runner processes", () => {
  it.live(
    "from the runner without the shard: a presence update reaches the holder's socket, a member request its answer, and the health names the holder",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 1_000,
          guilds: [guild],
          members: { perGuild: 5, chunkSize: 2 },
        })
        const { url } = yield* TestDatabase.TestDatabase
        const env = envFor(Redacted.value(url), gateway.url)
        const first = yield* RunnerProcess.start({ name: "a", port: yield* RunnerProcess.freePort, env })
        yield* eventually(
          () => first.starts().length > 0,
          "the shard started on the first runner",
          "30 seconds",
        )
        const second = yield* RunnerProcess.start({ name: "b", port: yield* RunnerProcess.freePort, env })
        yield* eventually(second.joined, "the second runner joined", "30 seconds")
        // The shard may hop once the second runner joins: wait for 2 s without a new start.
        const starts = () => first.starts().length + second.starts().length
        let seen = starts()
        let since = Date.now()
        yield* eventually(
          Effect.gen(function* () {
            const open = (yield* gateway.connections).filter((c) => c.state === "open" && c.authenticated)
            if (starts() !== seen || open.length !== 1) {
              seen = starts()
              since = Date.now()
            }
            return Date.now() - since >= 2_000
          }),
          "the placement settled",
          "40 seconds",
        )
        const latest = (r: RunnerProcess.RunnerProcess) => r.starts().at(-1)?.at ?? 0
        const [holder, other] = latest(second) > latest(first) ? [second, first] : [first, second]
        const [socket] = (yield* gateway.connections).filter((c) => c.state === "open")

        // Commands: sent from the runner that does not hold the shard.
        const before = (yield* gateway.entries).length
        assert.strictEqual(yield* other.request("presence", "0"), "ok")
        const presence = yield* gateway.awaitEntry((entry) => entry._tag === "Received" && entry.op === 3, {
          timeout: "5 seconds",
        })
        assert.strictEqual(
          (presence as Recording.Received).connection,
          socket!.id,
          "not on the holder's socket",
        )
        assert.deepInclude((presence as Recording.Received).payload as object, {
          d: { since: null, activities: [], status: "idle", afk: false },
        })
        assert.strictEqual(
          Recording.received((yield* gateway.entries).slice(before), 3).length,
          1,
          "the presence update sent more than once",
        )
        // A member request: its chunks gathered on the holder, the result sent back.
        assert.strictEqual(yield* other.request("members", `0,${guild}`), "members 5")
        assert.strictEqual(Recording.received(yield* gateway.entries, 8).length, 1)
        // A shard no runner runs: a typed refusal from the runner its entity maps to.
        const refused = yield* other.request("presence", "7")
        assert.match(refused, /^error ShardNotRunning shard 7\/1 is not running/)

        // Health: read on the runner without the shard.
        const rows = yield* Effect.gen(function* () {
          for (;;) {
            const reply = yield* other.request("health")
            const parsed = JSON.parse(reply.replace(/^health /, "")) as Array<{
              shard: [number, number]
              owner: string
              state: string
              latencyMillis?: number
              stale: boolean
            }>
            if (parsed.length === 1 && parsed[0]!.latencyMillis !== undefined) return parsed
            yield* Effect.sleep("200 millis")
          }
        }).pipe(Effect.timeout("10 seconds"))
        assert.deepStrictEqual(rows[0]!.shard, [0, 1])
        assert.strictEqual(rows[0]!.owner, `127.0.0.1:${holder.port}`)
        assert.strictEqual(rows[0]!.state, "Ready")
        assert.isFalse(rows[0]!.stale)
        assert.isAtLeast(rows[0]!.latencyMillis!, 0)

        // The holder leaves (SIGTERM): the health follows the shard to the other runner.
        holder.child.kill("SIGTERM")
        yield* eventually(
          Effect.map(other.request("health"), (reply) => {
            const parsed = JSON.parse(reply.replace(/^health /, "")) as Array<{
              owner: string
              state: string
            }>
            return (
              parsed.length === 1 &&
              parsed[0]!.owner === `127.0.0.1:${other.port}` &&
              parsed[0]!.state === "Ready"
            )
          }),
          "the health to name the new holder",
          "20 seconds",
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    90_000,
  )
})

/** Runs the runner program to its exit (at most `seconds`): its exit code, stderr and how long it took. */
const runToExit = (env: Record<string, string>, port: number, seconds = 20) =>
  Effect.gen(function* () {
    const runner = yield* RunnerProcess.start({ name: "bad", port, env })
    const started = Date.now()
    yield* eventually(runner.exited, "the runner to exit", `${seconds} seconds`)
    return { code: runner.child.exitCode, stderr: runner.stderr(), millis: Date.now() - started }
  }).pipe(Effect.scoped)

describe("ClusterRunner start-up errors", () => {
  it.live(
    "a wrong DATABASE_URL, a database that refuses, an address in use: one clear line, exit 2, no hang",
    () =>
      Effect.gen(function* () {
        const { url } = yield* TestDatabase.TestDatabase
        const gatewayUrl = "ws://127.0.0.1:9"
        const closedPort = yield* RunnerProcess.freePort
        const wrongPassword = new URL(Redacted.value(url))
        wrongPassword.password = "not-the-password"
        // A port some other process listens on.
        const taken = yield* Effect.acquireRelease(
          Effect.promise(
            () =>
              new Promise<net.Server>((resolve) => {
                const server = net.createServer().listen(0, "127.0.0.1", () => resolve(server))
              }),
          ),
          (server) => Effect.sync(() => server.close()),
        )
        const takenPort = (taken.address() as net.AddressInfo).port

        const [scheme, refused, password, inUse] = yield* Effect.all(
          [
            runToExit(envFor("mysql://user:secret@127.0.0.1/db", gatewayUrl), yield* RunnerProcess.freePort),
            runToExit(
              envFor(`postgres://vigil:secret@127.0.0.1:${closedPort}/vigil`, gatewayUrl),
              yield* RunnerProcess.freePort,
            ),
            runToExit(envFor(wrongPassword.toString(), gatewayUrl), yield* RunnerProcess.freePort),
            runToExit(envFor(Redacted.value(url), gatewayUrl), takenPort),
          ],
          { concurrency: "unbounded" },
        )
        assert.strictEqual(scheme.code, 2, scheme.stderr)
        assert.include(
          scheme.stderr,
          "vigil runner: DATABASE_URL is not usable: the scheme must be postgres://",
        )
        assert.strictEqual(refused.code, 2, refused.stderr)
        assert.include(
          refused.stderr,
          `vigil runner: PostgreSQL at 127.0.0.1:${closedPort}/vigil is unavailable: PgConnection: Failed to connect: connect ECONNREFUSED`,
        )
        assert.strictEqual(password.code, 2, password.stderr)
        assert.include(
          password.stderr,
          "is unavailable: PgConnection: Failed to connect: password authentication failed",
        )
        assert.strictEqual(inUse.code, 2, inUse.stderr)
        assert.include(
          inUse.stderr,
          `vigil runner: the runner address 127.0.0.1:${takenPort} cannot be listened on: listen EADDRINUSE`,
        )
        for (const run of [scheme, refused, password, inUse]) {
          assert.isBelow(run.millis, 15_000, "a start-up error took too long")
          assert.notInclude(run.stderr, "secret", "the password reached a message")
          assert.notInclude(run.stderr, "not-the-password", "the password reached a message")
        }
      }).pipe(Effect.provide(TestDatabase.fresh)),
    60_000,
  )
})

describe("the README's bot.ts", () => {
  it.live(
    "runs its shards, and its presence update reaches shard 0 once it is placed",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 1_000,
          shards: 2,
          maxConcurrency: 2,
        })
        const { url } = yield* TestDatabase.TestDatabase
        const bot = yield* NodeProgram.start(
          path.join(import.meta.dirname, "readme", "bot.ts"),
          {
            DATABASE_URL: Redacted.value(url),
            DISCORD_TOKEN: token,
            GATEWAY_URL: gateway.url,
            SHARD_COUNT: "2",
            MAX_CONCURRENCY: "2",
            RUNNER_HOST: "127.0.0.1",
            RUNNER_PORT: String(yield* RunnerProcess.freePort),
          },
          { conditions: ["@vigil/source"] },
        )
        const presence = yield* gateway
          .awaitEntry((entry) => entry._tag === "Received" && entry.op === 3, { timeout: "30 seconds" })
          .pipe(Effect.tapError(() => Effect.sync(() => console.error(bot.stdout()))))
        const entries = yield* gateway.entries
        assert.strictEqual(
          Recording.shardOfConnection(entries).get((presence as Recording.Received).connection),
          0,
        )
        assert.strictEqual(Recording.identifyCount(entries), 2)
      }).pipe(Effect.provide(TestDatabase.fresh)),
    60_000,
  )
})
