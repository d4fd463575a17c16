/**
 * Vigil's adapter: what an application would write. One shard (`Shard.make`) or many
 * (`ShardManager.make`) on `NodeGateway.layer()`, the event stream consumed with
 * `Stream.runForEach`, the whole program forked once with `Effect.runFork`; `close()`
 * interrupts it, which closes the scope and with it every connection.
 */
import { IdentifyThrottle, Metrics, Protocol, Shard, ShardManager } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { DiscordProvider } from "@vigil/provider"
import { Cause, Effect, Fiber, Layer, Redacted, type Scope, Stream } from "effect"
import { FetchHttpClient, HttpClient, HttpClientResponse } from "effect/http"
import type { BenchClient, BenchClientHandle, BenchClientOptions, BenchManyOptions } from "./Clients.ts"
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

const shardProgram = (options: BenchClientOptions) =>
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
  })

const shardLayer = Layer.merge(
  NodeGateway.layer(),
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
)

const managerProgram = (options: BenchManyOptions) =>
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
  })

const managerLayer = Layer.merge(NodeGateway.layer(), FetchHttpClient.layer)
const metricsOff = Layer.succeed(Metrics.Enabled)(false)

/** The same as `vigil`, with metrics switched off (`Metrics.Enabled`): what metrics cost. */
export const vigilNoMetrics: BenchClient = {
  name: "vigil (metrics off)",
  description: "Vigil Shard as `vigil`, with Metrics.Enabled false",
  supports: (encoding) => encoding === "json",
  heartbeats: false,
  start: async (options) => fork(shardProgram(options), Layer.merge(shardLayer, metricsOff)),
  startMany: async (options) => fork(managerProgram(options), Layer.merge(managerLayer, metricsOff)),
}

/**
 * What an app consumes: `DiscordProvider.events` (a ShardManager of one shard underneath, its
 * events published to the provider's hub). `gatewayBot` is given; the one REST call a start
 * makes (`GET /users/@me`, who the bot is) is answered in memory: no network but the generator.
 */
export const vigilProvider: BenchClient = {
  name: "vigil provider",
  description: "Vigil DiscordProvider.events (ShardManager of one shard, the provider's hub)",
  supports: () => true,
  heartbeats: false,
  start: async (options) =>
    fork(
      Effect.gen(function* () {
        const discord = yield* DiscordProvider.DiscordProvider
        const consumer = yield* Effect.forkScoped(
          Stream.runForEach(discord.events, (event) =>
            Effect.sync(() => options.onDispatch(Protocol.eventName(event.dispatch), event.dispatch.data)),
          ),
        )
        yield* discord.start
        yield* Fiber.join(consumer)
      }),
      DiscordProvider.layer({
        token: Redacted.make(options.token),
        intents: 0,
        compression: compressionOf(options.encoding),
        gatewayBot: {
          url: options.url,
          shards: 1,
          session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 },
        },
      }).pipe(Layer.provide(Layer.merge(NodeGateway.layer(), botUserOnly))),
    ),
  startMany: async (options) =>
    fork(
      Effect.gen(function* () {
        const discord = yield* DiscordProvider.DiscordProvider
        const consumer = yield* Effect.forkScoped(
          Stream.runForEach(discord.events, (event) =>
            Effect.sync(() => {
              if (event.dispatch.type === "READY") options.onReady(event.shardId)
            }),
          ),
        )
        yield* discord.start
        yield* Fiber.join(consumer)
      }),
      DiscordProvider.layer({
        token: Redacted.make(options.token),
        intents: 0,
        shardCount: options.count,
        gatewayBot: manyGatewayBot(options),
      }).pipe(Layer.provide(Layer.merge(NodeGateway.layer(), botUserOnly))),
    ),
}

/** An HttpClient that knows one route, `GET /users/@me`. */
const botUserOnly = Layer.succeed(HttpClient.HttpClient)(
  HttpClient.make((request) =>
    Effect.succeed(
      HttpClientResponse.fromWeb(
        request,
        new Response(JSON.stringify({ id: "1", username: "bench-bot", bot: true }), {
          status: 200,
          headers: { "content-type": "application/json" },
        }),
      ),
    ),
  ),
)

export const vigil: BenchClient = {
  name: "vigil",
  description: "Vigil Shard on NodeGateway.layer(), Stream.runForEach over shard.events",
  supports: () => true,
  heartbeats: true,
  start: async (options) => fork(shardProgram(options), shardLayer),
  startMany: async (options) => fork(managerProgram(options), managerLayer),
}
