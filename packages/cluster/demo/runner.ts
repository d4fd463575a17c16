/**
 * One runner of a bot's cluster, as `ClusterRunner` runs it: the program `npm run
 * demo:cluster` starts three of, and the multi-process tests start two of. Environment:
 * DATABASE_URL, GATEWAY_URL, TOKEN, RUNNER_PORT (RUNNER_HOST, default 127.0.0.1), SHARDS
 * (the shard count, default 1), TIMINGS (`default` for `ClusterRunner.defaultTimings`, else the
 * fast ones), MAX_CONCURRENCY (identifies per 5 s, default 1), HANDLE_MILLIS (the app's time per event, default 0).
 *
 * It prints one line per fact: `joined <address>` once it is in the cluster, `started <shard>`
 * each time a shard starts here, `event <shard> <seq> <type>` per dispatch handled, and
 * `reply <id> ...` for each command read on stdin:
 * - `presence <id> <shard>`: a presence update for that shard, sent from here through the
 *   cluster (`ShardCommands`) → `reply <id> ok` or `reply <id> error <tag>`;
 * - `members <id> <shard>,<guild id>`: a member request (all of the guild's members) for that
 *   shard, from here → `reply <id> members <count>` or `reply <id> error <tag>`;
 * - `health <id>`: the cluster's health (`ClusterHealth`) → `reply <id> health <json>`.
 * A start-up failure prints `vigil runner: <message>` on stderr and exits with code 2.
 */
import * as readline from "node:readline"
import { NodeRuntime } from "@effect/platform-node"
import { ClusterHealth, ClusterRunner, ShardCommands } from "@vigil/cluster"
import { NodeCompression, NodeTransport } from "@vigil/gateway-node"
import { Effect, Layer, Logger, LogLevel, Redacted, Stream } from "effect"

const env = (name: string) => process.env[name] ?? ""
const say = (line: string) => Effect.sync(() => void process.stdout.write(`${line}\n`))

const count = Number(env("SHARDS") || 1)
const handleMillis = Number(env("HANDLE_MILLIS") || 0)
const address = { host: env("RUNNER_HOST") || "127.0.0.1", port: Number(env("RUNNER_PORT")) }

const runner = ClusterRunner.layer({
  address,
  database: { url: Redacted.make(env("DATABASE_URL")), connectTimeout: "3 seconds" },
  maxConcurrency: Number(env("MAX_CONCURRENCY") || 1),
  timings: env("TIMINGS") === "default" ? ClusterRunner.defaultTimings : ClusterRunner.fastTimings,
  healthInterval: "500 millis",
  shards: Array.from({ length: count }, (_, id) => [id, count] as const),
  config: {
    token: Redacted.make(env("TOKEN")),
    intents: 513,
    gatewayUrl: env("GATEWAY_URL"),
    sessionSave: { interval: "100 millis", events: 1 },
  },
  run: (shard) =>
    Effect.andThen(
      say(`started ${shard.id}`),
      Stream.runForEach(shard.events, (event) =>
        Effect.andThen(Effect.sleep(handleMillis), say(`event ${shard.id} ${event.seq} ${event.type}`)),
      ),
    ),
})

/** One command line from stdin, answered on stdout. */
const command = (line: string) =>
  Effect.gen(function* () {
    const [verb, id, arg] = line.trim().split(" ")
    if (verb === "presence") {
      const commands = yield* ShardCommands.client
      const reply = yield* commands([Number(arg), count])
        .updatePresence({ since: null, activities: [], status: "idle", afk: false })
        .pipe(
          Effect.as("ok"),
          Effect.catch((error) => Effect.succeed(`error ${error._tag} ${error.message}`)),
        )
      yield* say(`reply ${id} ${reply}`)
    } else if (verb === "members") {
      const [shard, guildId] = (arg ?? "").split(",")
      const commands = yield* ShardCommands.client
      const reply = yield* commands([Number(shard), count])
        .requestGuildMembers({ guildId: guildId ?? "", query: "", limit: 0, timeoutMillis: 5_000 })
        .pipe(
          Effect.map((result) => `members ${result.members.length}`),
          Effect.catch((error) => Effect.succeed(`error ${error._tag} ${error.message}`)),
        )
      yield* say(`reply ${id} ${reply}`)
    } else if (verb === "health") {
      const health = yield* ClusterHealth.ClusterHealth
      const rows = yield* health.read.pipe(Effect.orDie)
      yield* say(`reply ${id} health ${JSON.stringify(rows)}`)
    }
  })

// Made when first read: an open stdin must not keep a runner that failed to start alive.
const lines = Stream.suspend(() =>
  Stream.fromAsyncIterable(readline.createInterface({ input: process.stdin }), (error) => error),
)

const logs = Logger.layer([
  Logger.make(({ message, logLevel }) => {
    if (LogLevel.isGreaterThanOrEqualTo(logLevel, "Warn")) {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      process.stdout.write(`log ${text.replaceAll("\n", " ")}\n`)
    }
  }),
])

Effect.gen(function* () {
  yield* say(`joined ${ClusterRunner.addressOf(address)}`)
  yield* Stream.runForEach(lines, (line) => Effect.forkChild(command(line))).pipe(Effect.orDie)
  return yield* Effect.never
}).pipe(
  Effect.provide(runner.pipe(Layer.provide(Layer.mergeAll(NodeTransport.layer(), NodeCompression.layer)))),
  Effect.catch((error) =>
    Effect.sync(() => {
      process.stderr.write(`vigil runner: ${error.message}\n`)
      process.exitCode = 2
    }),
  ),
  Effect.provide(logs),
  NodeRuntime.runMain,
)
