import { NodeRuntime } from "@effect/platform-node"
import { ClusterHealth, ClusterRunner, ShardCommands } from "@vigil/cluster"
import { NodeGateway } from "@vigil/gateway-node"
import { Config, Effect, Layer, Schedule, Stream } from "effect"

// One runner of the bot: the same program on every machine, each with its own RUNNER_HOST.
const runner = Effect.gen(function* () {
  const count = yield* Config.Int("SHARD_COUNT") // from GET /gateway/bot, the same everywhere
  const port = yield* Config.Int("RUNNER_PORT").pipe(Config.withDefault(34431))
  return ClusterRunner.layer({
    address: { host: yield* Config.String("RUNNER_HOST"), port }, // how the others reach this one
    listen: { host: "0.0.0.0", port },
    database: { url: yield* Config.Redacted("DATABASE_URL") },
    maxConcurrency: yield* Config.Int("MAX_CONCURRENCY").pipe(Config.withDefault(1)),
    shards: Array.from({ length: count }, (_, id) => [id, count] as const),
    config: {
      token: yield* Config.Redacted("DISCORD_TOKEN"),
      intents: 513,
      gatewayUrl: yield* Config.String("GATEWAY_URL").pipe(Config.withDefault("wss://gateway.discord.gg")),
    },
    // Runs where the shard lives; it moves with the shard.
    run: (shard) =>
      Stream.runForEach(shard.events, (event) =>
        Effect.log(`shard ${shard.id}: ${event.type} #${event.seq}`),
      ),
  })
})

// From any runner: the whole cluster's health, and a command to shard 0 wherever it runs.
const app = Effect.gen(function* () {
  const health = yield* ClusterHealth.ClusterHealth
  const shard = (yield* ShardCommands.client)([0, yield* Config.Int("SHARD_COUNT")])
  yield* Effect.forkScoped(
    Effect.gen(function* () {
      for (const row of yield* health.read) {
        yield* Effect.log(
          `shard ${row.shard[0]} on ${row.owner}: ${row.state}, ${row.latencyMillis ?? "?"} ms`,
        )
      }
    }).pipe(Effect.ignore, Effect.repeat(Schedule.spaced("1 minute"))),
  )
  yield* shard.updatePresence({ since: null, activities: [], status: "online", afk: false }).pipe(
    // Not placed yet, or moving: try again. Any other error is the command's own.
    Effect.retry({
      while: (e) => e._tag === "ShardNotRunning" || e._tag === "ShardUnreachable",
      schedule: Schedule.spaced("1 second"),
    }),
    Effect.catch((e) => Effect.logWarning(e.message)),
  )
  return yield* Effect.never
})

app.pipe(
  Effect.scoped,
  Effect.provide(Layer.unwrap(runner).pipe(Layer.provide(NodeGateway.layer()))),
  NodeRuntime.runMain,
)
