import { NodeRuntime } from "@effect/platform-node"
import { Connection } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { Config, Effect } from "effect"

// One WebSocket, open to close: it ends by failing with why it ended.
const connection = Effect.gen(function* () {
  const token = yield* Config.Redacted("DISCORD_TOKEN")
  const url = yield* Config.String("DISCORD_GATEWAY_URL").pipe(Config.withDefault("wss://gateway.discord.gg"))
  return yield* Connection.run({
    url,
    token,
    intents: 513,
    shard: [0, 1],
    handshake: { _tag: "identify" },
    onEvent: (event) =>
      event._tag === "Dispatches" ? Effect.log(`${event.dispatches.length} events`) : Effect.void,
  })
}).pipe(
  Effect.catchTag("ZombieDetected", (zombie) => Effect.log(`dead link: ${zombie.message}`)),
  Effect.provide(NodeGateway.layer()),
)

NodeRuntime.runMain(connection)
