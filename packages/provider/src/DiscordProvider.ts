/**
 * `DiscordProvider`: what an app plugs in to talk on Discord. It runs the gateway (a
 * `ShardManager`) under `start` / `stop` / `reload`, reports health, hands on typed inbound
 * messages and sends messages through the rate-limited REST API.
 *
 * ```ts
 * const program = Effect.gen(function* () {
 *   const discord = yield* DiscordProvider
 *   yield* Effect.forkScoped(
 *     Stream.runForEach(discord.messages, (m) =>
 *       m._tag === "MessageCreated" && m.mentionsBot ? discord.send(m.channelId, "hello!") : Effect.void,
 *     ),
 *   )
 *   yield* discord.start
 *   yield* discord.await // fails with a fatal gateway error (bad token, …), by tag
 * })
 * program.pipe(Effect.provide(DiscordProvider.layer({ token: Redacted.make(t), intents: 33281 })))
 * ```
 *
 * Lifecycle. Each `start` or `reload` opens a *generation*: a `ShardManager` in a scope of
 * its own, with its event pump and watchers. Lifecycle operations are serialized (one at a
 * time, in call order); a generation's scope is closed — sockets torn down, heartbeats and
 * pumps interrupted — before the next one opens, so there is never more than one session
 * or socket per shard, and nothing of an old generation outlives it. A reload that keeps
 * token, intents and shards resumes the sessions (no identify spent); any other ends them
 * first (close 1000), so none is left behind. Closing the provider's scope (app shutdown)
 * waits for the operation under way, then stops the running generation.
 *
 * Streams are hot: `events`, `inbound` and `messages` deliver what arrives while they run,
 * across reloads; start consuming before `start` to see READY. They are bounded: a slow
 * consumer slows the shards down (back-pressure), nothing is dropped.
 */
import {
  type GatewayError,
  GatewayInfo,
  type IdentifyThrottle,
  type Protocol,
  type ReconnectPolicy,
  type SessionStore,
  ShardManager,
  type Transport,
} from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import {
  Clock,
  Context,
  Deferred,
  type Duration,
  Effect,
  Equal,
  Exit,
  Layer,
  Option,
  PubSub,
  Redacted,
  Result,
  Schedule,
  Scope,
  Semaphore,
  Stream,
  SubscriptionRef,
} from "effect"
import { FetchHttpClient, type HttpClient } from "effect/http"
import * as Health from "./Health.ts"
import * as Inbound from "./Inbound.ts"
import { ProviderClosed, type SendError } from "./ProviderError.ts"
import * as Rest from "./Rest.ts"

export interface ProviderConfig {
  readonly token: Redacted.Redacted<string>
  readonly intents: number
  /** Total shard count; default: Discord's recommendation from `GET /gateway/bot`. */
  readonly shardCount?: number | undefined
  /** Which shards this process runs: all (default), a list, or a range. */
  readonly shards?: ShardManager.ShardManagerConfig["shards"]
  /** REST base, default `https://discord.com/api/v10` (tests: a fake's). */
  readonly apiBaseUrl?: string | undefined
  /** Skip `GET /gateway/bot` and use this answer. */
  readonly gatewayBot?: GatewayInfo.GatewayBot | undefined
  /** Transport compression; needs a codec in the context (else the shards stop, typed). */
  readonly compression?: Protocol.Compression | undefined
  readonly properties?: Protocol.IdentifyProperties | undefined
  readonly presence?: unknown
  readonly largeThreshold?: number | undefined
  readonly policy?: Partial<ReconnectPolicy.PolicyConfig> | undefined
  readonly helloTimeout?: Duration.Input | undefined
  readonly handshakeTimeout?: Duration.Input | undefined
  readonly onSessionLimitExhausted?: "fail" | "wait" | undefined
  /** Capacity of each event buffer (per shard, merged, and the provider's). Default 1024. */
  readonly eventCapacity?: number | undefined
  /** Hand on the bot's own messages too. Default false. */
  readonly includeOwnMessages?: boolean | undefined
  /** REST options (retries, limits, timeouts). */
  readonly rest?: Omit<Rest.RestConfig, "token" | "apiBaseUrl"> | undefined
  /**
   * Retries of `GET /gateway/bot` when it cannot be reached or answers 5xx (backoff from
   * 200 ms, doubling). Default 5. A refused token fails at once.
   */
  readonly startRetries?: number | undefined
  /** How long stopping waits for shards to close their sessions before tearing down. Default 5 s. */
  readonly logoutTimeout?: Duration.Input | undefined
  /**
   * On app shutdown (scope close, e.g. Ctrl-C or a deploy): keep the sessions resumable
   * (default: closed with a resumable code, so the restarted process resumes instead of
   * spending an identify) or end them (close 1000, the bot shows offline at once).
   */
  readonly onShutdown?: "logout" | "keep-session" | undefined
}

export interface StopOptions {
  /**
   * `end` (default): close with 1000, the bot goes offline and the sessions are gone.
   * `keep`: close with a resumable code; the next `start` resumes (no identify spent).
   */
  readonly session?: "end" | "keep" | undefined
}

export type FatalError = ShardManager.ManagerStop

/** Why a start or reload failed: `GET /gateway/bot` did, or refused the token (401). */
export type StartError = GatewayInfo.GatewayInfoError | GatewayError.AuthenticationFailed

export interface DiscordProviderService {
  /** Connects (a new generation). Does nothing if running. Fails if `GET /gateway/bot` fails. */
  readonly start: Effect.Effect<void, StartError | ProviderClosed>
  /** Disconnects every shard; after it, no socket, heartbeat or pump is left. Does nothing if stopped. */
  readonly stop: (options?: StopOptions) => Effect.Effect<void>
  /**
   * Replaces the configuration. If running, the running generation is closed, then a new
   * one opens with the new configuration. If stopped, it only takes effect at `start`.
   */
  readonly reload: (config: ProviderConfig) => Effect.Effect<void, StartError | ProviderClosed>
  /** The configuration in effect. */
  readonly config: Effect.Effect<ProviderConfig>

  readonly health: Effect.Effect<Health.ProviderHealth>
  /**
   * Health snapshots: the current one, then one after every change of a shard's state or
   * the provider's (a slow consumer gets the latest, not a backlog), and one every
   * `every` if given (for the counters and latencies, which change all the time).
   */
  readonly healthChanges: (options?: {
    readonly every?: Duration.Input | undefined
  }) => Stream.Stream<Health.ProviderHealth>
  /** Waits until running with every shard ready; fails with a fatal error that comes first. */
  readonly awaitReady: Effect.Effect<void, FatalError | ProviderClosed>
  /** Waits until the provider shuts down; fails with the first fatal gateway error of a generation. */
  readonly await: Effect.Effect<void, FatalError>

  /** Every dispatch of every shard, tagged with the shard id, across reloads. */
  readonly events: Stream.Stream<ShardManager.ShardEvent>
  /** Message events, each a `Result`: the decoded event, or a `MalformedEvent` (the stream goes on). */
  readonly inbound: Stream.Stream<Inbound.Inbound>
  /** Decoded message events only; malformed ones are logged (warning) and counted in health. */
  readonly messages: Stream.Stream<Inbound.MessageEvent>

  /** Sends a message through the REST API, rate limits honoured. Works whether or not the gateway runs. */
  readonly send: (
    channelId: string,
    message: string | Rest.MessageOptions,
  ) => Effect.Effect<Rest.SentMessage, SendError>
  /** The running generation's shard manager (gateway commands: presence, members…), if any. */
  readonly manager: Effect.Effect<Option.Option<ShardManager.ShardManager>>
}

export class DiscordProvider extends Context.Service<DiscordProvider, DiscordProviderService>()(
  "@vigil/provider/DiscordProvider",
) {
  /** Batteries included: Node WebSocket transport, fetch HttpClient, in-memory session store. */
  static readonly layer = (config: ProviderConfig): Layer.Layer<DiscordProvider> => layer(config)
  /** Bring your own transport, HttpClient and session store (tests, other runtimes). */
  static readonly layerWithoutDependencies = (
    config: ProviderConfig,
  ): Layer.Layer<
    DiscordProvider,
    never,
    Transport.GatewayTransport | SessionStore.SessionStore | HttpClient.HttpClient
  > => Layer.effect(DiscordProvider)(make(config))
}

interface Generation {
  readonly id: number
  readonly scope: Scope.Closeable
  readonly manager: ShardManager.ShardManager
  readonly config: ProviderConfig
  /** Per shard: connection endings counted by error tag. */
  readonly errors: Map<number, Record<string, number>>
}

const summary = (error: { readonly _tag: string; readonly message: string }): Health.ErrorSummary => ({
  tag: error._tag,
  message: error.message,
})

const sameSelection = (a: ProviderConfig["shards"], b: ProviderConfig["shards"]) =>
  JSON.stringify(a ?? null) === JSON.stringify(b ?? null)

/** Whether the sessions of a generation run with `a` can be resumed by one run with `b`. */
const sessionsCarryOver = (a: ProviderConfig, b: ProviderConfig): boolean =>
  Redacted.value(a.token) === Redacted.value(b.token) &&
  a.intents === b.intents &&
  a.shardCount !== undefined &&
  a.shardCount === b.shardCount &&
  sameSelection(a.shards, b.shards)

const managerConfig = (config: ProviderConfig): ShardManager.ShardManagerConfig => ({
  token: config.token,
  intents: config.intents,
  shardCount: config.shardCount,
  shards: config.shards,
  apiBaseUrl: config.apiBaseUrl,
  gatewayBot: config.gatewayBot,
  compression: config.compression,
  properties: config.properties,
  presence: config.presence,
  largeThreshold: config.largeThreshold,
  policy: config.policy,
  helloTimeout: config.helloTimeout,
  handshakeTimeout: config.handshakeTimeout,
  onSessionLimitExhausted: config.onSessionLimitExhausted,
  events: { capacity: config.eventCapacity ?? 1024 },
})

const restConfig = (config: ProviderConfig): Rest.RestConfig => ({
  ...config.rest,
  token: config.token,
  apiBaseUrl: config.apiBaseUrl,
})

export const make = Effect.fnUntraced(function* (
  initial: ProviderConfig,
): Effect.fn.Return<
  DiscordProviderService,
  never,
  Scope.Scope | Transport.GatewayTransport | SessionStore.SessionStore | HttpClient.HttpClient
> {
  // Everything a generation needs (transport, store, HttpClient, codecs, tracer…), captured once.
  const context = yield* Effect.context<
    Transport.GatewayTransport | SessionStore.SessionStore | HttpClient.HttpClient
  >()
  const capacity = initial.eventCapacity ?? 1024
  const eventsHub = yield* PubSub.bounded<ShardManager.ShardEvent>(capacity)
  const inboundHub = yield* PubSub.bounded<Inbound.Inbound>(capacity)
  const changed = yield* PubSub.sliding<void>(1)
  const fatalRef = yield* SubscriptionRef.make<Option.Option<FatalError>>(Option.none())
  const closedSignal = yield* Deferred.make<void>()
  const shuttingDown = yield* Deferred.make<void>()
  const lock = yield* Semaphore.make(1)

  let config = initial
  let state: Health.ProviderState = "Stopped"
  let current: Generation | undefined
  let generations = 0
  let identifyLimits:
    | {
        readonly token: Redacted.Redacted<string>
        readonly throttle: IdentifyThrottle.IdentifyThrottleService
      }
    | undefined
  let closed = false
  let startError: Health.ErrorSummary | undefined
  let botUser: { readonly id: string; readonly username: string } | undefined
  const inbound = { messages: 0, malformed: 0, ownSkipped: 0 }
  const outbound = { sent: 0, failed: {} as Record<string, number> }
  let rest = yield* Rest.make(restConfig(initial)).pipe(Effect.provideContext(context))

  const signal = PubSub.publish(changed, undefined).pipe(Effect.asVoid)
  const setState = (next: Health.ProviderState) =>
    Effect.suspend(() => {
      state = next
      return signal
    })

  // A generation --------------------------------------------------------------

  /** Hands a dispatch on: to `events`, and decoded to `inbound` if it is a message event. */
  const pump = (event: ShardManager.ShardEvent) =>
    Effect.suspend(() => {
      const { shardId, dispatch } = event
      let published = PubSub.publish(eventsHub, event).pipe(Effect.asVoid)
      if (dispatch.type === "READY") {
        botUser = Inbound.readyUser(dispatch.data) ?? botUser
        published = Effect.andThen(published, signal)
      }
      if (!Inbound.messageTypes.has(dispatch.type)) return published
      const decoded = Inbound.decode(shardId, dispatch, {
        botUserId: botUser?.id,
        includeOwn: config.includeOwnMessages,
      })
      switch (decoded._tag) {
        case "Event":
          inbound.messages++
          return Effect.andThen(published, PubSub.publish(inboundHub, Result.succeed(decoded.event)))
        case "Malformed":
          inbound.malformed++
          return Effect.andThen(published, PubSub.publish(inboundHub, Result.fail(decoded.error)))
        case "Skip":
          if (decoded.own) inbound.ownSkipped++
          return published
      }
    })

  /** Counts how connections end and signals each state change of one shard. */
  const watch = (generation: Generation, shardId: number) =>
    Effect.suspend(() => {
      const shard = generation.manager.shard(shardId)
      if (shard === undefined) return Effect.void
      let last: Health.ErrorSummary | undefined
      return Stream.runForEach(SubscriptionRef.changes(shard.status), (status) =>
        Effect.suspend(() => {
          if (status.lastError !== undefined && status.lastError !== last) {
            const counts = generation.errors.get(shardId) ?? {}
            counts[status.lastError.tag] = (counts[status.lastError.tag] ?? 0) + 1
            generation.errors.set(shardId, counts)
          }
          last = status.lastError
          return signal
        }),
      )
    })

  const open = (next: ProviderConfig): Effect.Effect<void, StartError> =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const id = ++generations
      yield* SubscriptionRef.set(fatalRef, Option.none())
      // The identify limits belong to the bot, not to one generation: a reload for the same
      // token keeps its buckets and daily budget, so it cannot identify too fast.
      const sameBot = identifyLimits !== undefined && Equal.equals(identifyLimits.token, next.token)
      const manager = yield* ShardManager.make({
        ...managerConfig(next),
        identifyThrottle: sameBot ? identifyLimits?.throttle : undefined,
      }).pipe(
        Scope.provide(scope),
        Effect.provideContext(context),
        // An outage (no answer, 5xx) is worth a few more tries; a refused token is not.
        Effect.retry({
          schedule: Schedule.exponential(200, 2),
          times: next.startRetries ?? 5,
          while: (error) => error._tag === "GatewayInfoError" && GatewayInfo.isTransient(error),
        }),
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit))),
      )
      identifyLimits = { token: next.token, throttle: manager.identifyThrottle }
      const generation: Generation = { id, scope, manager, config: next, errors: new Map() }
      yield* Effect.forkIn(Stream.runForEach(manager.events, pump), scope)
      for (const shardId of manager.shardIds) yield* Effect.forkIn(watch(generation, shardId), scope)
      yield* Effect.forkIn(
        Effect.catch(manager.await, (error) =>
          Effect.andThen(SubscriptionRef.set(fatalRef, Option.some(error)), signal),
        ),
        scope,
      )
      current = generation
      startError = undefined
    }).pipe(
      Effect.tapError((error) =>
        Effect.sync(() => {
          startError = summary(error)
        }),
      ),
    )

  /** Closes a generation: sessions ended first if asked, then its scope. Never interrupted halfway. */
  const close = (generation: Generation, session: "end" | "keep") =>
    Effect.uninterruptible(
      Effect.gen(function* () {
        current = undefined
        if (session === "end") {
          const shards = generation.manager.shardIds.flatMap((id) => {
            const shard = generation.manager.shard(id)
            return shard ? [shard] : []
          })
          yield* Effect.forEach(shards, (shard) => shard.logout, {
            concurrency: "unbounded",
            discard: true,
          }).pipe(Effect.timeoutOption(config.logoutTimeout ?? 5_000))
        }
        yield* Scope.close(generation.scope, Exit.void)
      }),
    )

  // Lifecycle, one operation at a time ----------------------------------------

  /**
   * One lifecycle operation at a time, in call order. A shutdown interrupts the one under
   * way (a generation half opened is closed again; closing one is never interrupted) and
   * refuses those queued behind it.
   */
  const serialized = <A, E>(operation: string, body: Effect.Effect<A, E>) => {
    const refused = new ProviderClosed({ operation })
    return Semaphore.withPermits(
      lock,
      1,
    )(
      Effect.suspend(
        (): Effect.Effect<A, E | ProviderClosed> =>
          closed
            ? Effect.fail(refused)
            : Effect.raceFirst(body, Effect.andThen(Deferred.await(shuttingDown), Effect.fail(refused))),
      ),
    )
  }

  const start = serialized(
    "start",
    Effect.gen(function* () {
      if (current !== undefined) return
      yield* setState("Starting")
      yield* Effect.onExit(open(config), (exit) => setState(Exit.isSuccess(exit) ? "Running" : "Stopped"))
    }),
  )

  const stop = (options: StopOptions = {}) =>
    serialized(
      "stop",
      Effect.gen(function* () {
        const generation = current
        if (generation === undefined) return
        yield* setState("Stopping")
        yield* close(generation, options.session ?? "end")
        yield* setState("Stopped")
      }),
    ).pipe(Effect.catchTag("ProviderClosed", () => Effect.void))

  const reload = (next: ProviderConfig) =>
    serialized(
      "reload",
      Effect.gen(function* () {
        const previous = config
        config = next
        const credentials =
          Redacted.value(previous.token) !== Redacted.value(next.token) ||
          previous.apiBaseUrl !== next.apiBaseUrl ||
          JSON.stringify(previous.rest ?? null) !== JSON.stringify(next.rest ?? null)
        if (credentials) rest = yield* Rest.make(restConfig(next)).pipe(Effect.provideContext(context))
        if (Redacted.value(previous.token) !== Redacted.value(next.token)) botUser = undefined // another bot
        const generation = current
        if (generation === undefined) return
        yield* setState("Reloading")
        yield* close(generation, sessionsCarryOver(generation.config, next) ? "keep" : "end")
        yield* Effect.onExit(open(next), (exit) => setState(Exit.isSuccess(exit) ? "Running" : "Stopped"))
      }),
    )

  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      closed = true // operations queued behind the lock now find the provider closed
      yield* Deferred.succeed(shuttingDown, undefined)
      yield* Semaphore.withPermits(
        lock,
        1,
      )(
        Effect.gen(function* () {
          const generation = current
          if (generation !== undefined) {
            yield* close(generation, config.onShutdown === "logout" ? "end" : "keep")
          }
          state = "Closed"
        }),
      )
      yield* Deferred.succeed(closedSignal, undefined)
      yield* PubSub.shutdown(eventsHub)
      yield* PubSub.shutdown(inboundHub)
      yield* PubSub.shutdown(changed)
    }),
  )

  // Health ----------------------------------------------------------------------

  const health = Effect.gen(function* () {
    const at = yield* Clock.currentTimeMillis
    const generation = current
    const shards = generation
      ? (yield* generation.manager.health).map((h) =>
          Health.shardReport(h, { ...(generation.errors.get(h.shard[0]) ?? {}) }),
        )
      : []
    const fatal = Option.getOrUndefined(yield* SubscriptionRef.get(fatalRef))
    const limits = yield* rest.state
    return {
      at,
      state,
      generation: generations,
      ready:
        state === "Running" &&
        botUser !== undefined &&
        shards.length > 0 &&
        shards.every((s) => s.state._tag === "Ready"),
      botUser,
      fatal: fatal ? summary(fatal) : undefined,
      startError,
      shards,
      inbound: { ...inbound },
      outbound: {
        sent: outbound.sent,
        failed: { ...outbound.failed },
        requests: limits.requests,
        rateLimited: limits.rateLimited,
        retries: limits.retries,
      },
    } satisfies Health.ProviderHealth
  })

  const healthChanges = (options: { readonly every?: Duration.Input | undefined } = {}) =>
    Stream.unwrap(
      Effect.map(PubSub.subscribe(changed), (subscription) => {
        const ticks = Stream.concat(Stream.succeed(undefined), Stream.fromSubscription(subscription))
        const all = options.every === undefined ? ticks : Stream.merge(ticks, Stream.tick(options.every))
        return Stream.mapEffect(all, () => health)
      }),
    ).pipe(Stream.interruptWhen(Deferred.await(closedSignal)))

  const awaitFatal: Effect.Effect<void, FatalError> = Effect.raceFirst(
    Stream.runForEach(SubscriptionRef.changes(fatalRef), (fatal) =>
      Option.isSome(fatal) ? Effect.fail(fatal.value) : Effect.void,
    ),
    Deferred.await(closedSignal),
  )

  const awaitReady: Effect.Effect<void, FatalError | ProviderClosed> = Effect.raceFirst(
    Effect.flatMap(Stream.runHead(Stream.filter(healthChanges(), (h) => h.ready)), (ready) =>
      Option.isSome(ready) ? Effect.void : Effect.fail(new ProviderClosed({ operation: "awaitReady" })),
    ),
    Effect.andThen(awaitFatal, Effect.fail(new ProviderClosed({ operation: "awaitReady" }))),
  )

  // Outbound ----------------------------------------------------------------------

  const send = (channelId: string, message: string | Rest.MessageOptions) =>
    Effect.suspend(() => rest.sendMessage(channelId, message)).pipe(
      Effect.tap(() =>
        Effect.sync(() => {
          outbound.sent++
        }),
      ),
      Effect.tapError((error) =>
        Effect.sync(() => {
          outbound.failed[error._tag] = (outbound.failed[error._tag] ?? 0) + 1
        }),
      ),
    )

  const messages = Stream.fromPubSub(inboundHub).pipe(
    Stream.tap((item) => (Result.isFailure(item) ? Effect.logWarning(item.failure.message) : Effect.void)),
    Stream.filterMap((item) => (Result.isSuccess(item) ? Result.succeed(item.success) : Result.failVoid)),
  )

  return {
    start,
    stop,
    reload,
    config: Effect.sync(() => config),
    health,
    healthChanges,
    awaitReady,
    await: awaitFatal,
    events: Stream.fromPubSub(eventsHub),
    inbound: Stream.fromPubSub(inboundHub),
    messages,
    send,
    manager: Effect.sync(() => Option.fromNullishOr(current?.manager)),
  } satisfies DiscordProviderService
})

export const layer = (config: ProviderConfig): Layer.Layer<DiscordProvider> =>
  Layer.effect(DiscordProvider)(make(config)).pipe(
    Layer.provide(Layer.merge(NodeGateway.layer(), FetchHttpClient.layer)),
  )
