/**
 * Vigil's adapter: what an application would write. One shard (`Shard.make`) or many
 * (`ShardManager.make`) on `NodeGateway.layer()`, the event stream consumed with
 * `Stream.runForEach`, the whole program forked once with `Effect.runFork`; `close()`
 * interrupts it, which closes the scope and with it every connection.
 */
import { IdentifyThrottle, Protocol, Shard, ShardManager } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { Cause, Effect, Fiber, Layer, Redacted, type Scope, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import type { BenchClient, BenchClientHandle } from "./Clients.ts"
import { type Encoding, manyGatewayBot } from "./Workload.ts"

const compressionOf = (encoding: Encoding) => (encoding === "json" ? "none" : encoding)

/** Runs a scoped program until `close()`; a failure is printed, never swallowed. */
const fork = <E, R>(
  program: Effect.Effect<void, E, R | Scope.Scope>,
  layer: Layer.Layer<R>,
): BenchClientHandle => {
  const fiber = Effect.runFork(
    program.pipe(
      Effect.scoped,
      Effect.provide(layer),
      Effect.tapCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.void
          : Effect.sync(() => console.error(`vigil: ${Cause.pretty(cause)}`)),
      ),
    ),
  )
  return {
    close: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => undefined),
  }
}

export const vigil: BenchClient = {
  name: "vigil",
  description: "Vigil Shard on NodeGateway.layer(), Stream.runForEach over shard.events",
  supports: () => true,
  heartbeats: true,
  start: async (options) =>
    fork(
      Effect.gen(function* () {
        const shard = yield* Shard.make({
          token: Redacted.make(options.token),
          intents: 0,
          shard: [0, 1],
          gatewayUrl: options.url,
          compression: compressionOf(options.encoding),
        })
        yield* Stream.runForEach(shard.events, (dispatch) =>
          Effect.sync(() => options.onDispatch(Protocol.eventName(dispatch), dispatch.data)),
        )
      }),
      Layer.merge(NodeGateway.layer(), IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 })),
    ),
  startMany: async (options) =>
    fork(
      Effect.gen(function* () {
        // `gatewayBot` given: the manager makes no HTTP call (the client layer is unused).
        const manager = yield* ShardManager.make({
          token: Redacted.make(options.token),
          intents: 0,
          shardCount: options.count,
          gatewayBot: manyGatewayBot(options),
        })
        yield* Stream.runForEach(manager.events, (event) =>
          Effect.sync(() => {
            if (event.dispatch.type === "READY") options.onReady(event.shardId)
          }),
        )
      }),
      Layer.merge(NodeGateway.layer(), FetchHttpClient.layer),
    ),
}
