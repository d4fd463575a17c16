/**
 * A user's program, run with plain `node`: one Shard, on @vigil/gateway-node's layer, connects
 * to @vigil/testing's FakeGateway on 127.0.0.1 and waits for READY.
 */
import { NodeRuntime } from "@effect/platform-node"
import { IdentifyThrottle, Intents, Shard } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { FakeGateway } from "@vigil/testing"
import { Console, Effect, Layer, Option, Redacted, Stream } from "effect"

const token = "consumer-token"

const program = Effect.gen(function* () {
  const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
  const shard = yield* Shard.make({
    token: Redacted.make(token),
    intents: [Intents.GatewayIntentBits.Guilds, Intents.GatewayIntentBits.GuildMessages],
    shard: [0, 1],
    gatewayUrl: gateway.url,
  })
  const ready = yield* shard.events.pipe(
    Stream.filter((dispatch) => dispatch.type === "READY"),
    Stream.runHead,
    Effect.timeout("20 seconds"),
  )
  if (Option.isNone(ready) || ready.value.type !== "READY") {
    return yield* Effect.die("the event stream ended before READY")
  }
  // Discord's data, typed by discord-api-types through the packed .d.ts: no cast.
  yield* Console.log(`READY (seq ${ready.value.seq}) as ${ready.value.data.user.username}`)
}).pipe(
  Effect.scoped,
  Effect.provide(
    Layer.merge(NodeGateway.layer(), IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 })),
  ),
)

NodeRuntime.runMain(program)
