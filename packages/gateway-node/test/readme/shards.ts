import { NodeRuntime } from "@effect/platform-node"
import { ShardManager } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { Config, Effect, Layer, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

// As many shards as GET /gateway/bot recommends, their events merged into one stream.
const bot = Effect.gen(function* () {
  const manager = yield* ShardManager.make({
    token: yield* Config.Redacted("DISCORD_TOKEN"),
    intents: 513,
    // Discord's own unless set: a REST proxy, or a fake gateway in a test.
    apiBaseUrl: yield* Config.String("DISCORD_API_URL").pipe(
      Config.withDefault("https://discord.com/api/v10"),
    ),
  })
  yield* Effect.forkScoped(
    Stream.runForEach(manager.events, ({ shardId, dispatch }) =>
      Effect.log(`shard ${shardId}: ${dispatch.type} #${dispatch.seq}`),
    ),
  )
  return yield* manager.await // runs until a shard stops for good
}).pipe(
  Effect.catchTag("AuthenticationFailed", () => Effect.logError("the token was refused")),
  Effect.catchTag("DisallowedIntents", () =>
    Effect.logError("enable the privileged intents in the developer portal"),
  ),
  Effect.scoped,
  Effect.provide(Layer.merge(NodeGateway.layer(), FetchHttpClient.layer)),
)

NodeRuntime.runMain(bot)
