/**
 * `DiscordProvider`: what an app plugs in to talk on Discord. It runs the gateway (a
 * `ShardManager`) under `start` / `stop` / `reload`, reports health, hands on typed inbound
 * messages and sends messages through the rate-limited REST API.
 *
 * ```ts
 * const program = Effect.gen(function* () {
 *   const discord = yield* DiscordProvider
 *   const answer = (m: Inbound.MessageEvent) =>
 *     m._tag === "MessageCreated" && m.mentionsBot
 *       ? discord.send(m.channelId, "hello!").pipe(Effect.catch((e) => Effect.logWarning(e.message)))
 *       : Effect.void // a failed send is handled here, or it would end the stream
 *   yield* Effect.forkScoped(Stream.runDrain(Stream.mapEffect(discord.messages, answer, { concurrency: 8 })))
 *   yield* discord.start // a refused token fails it with AuthenticationFailed (401)
 *   yield* discord.await // fails with a fatal gateway error (4004, intents, …), by tag
 * })
 * // DISCORD_TOKEN (and DISCORD_API_URL, DISCORD_INTENTS) through Config; Node's transport and fetch
 * program.pipe(Effect.provide(DiscordProvider.layerConfig({ intents: 33281 }).pipe(Layer.provide(DiscordProvider.layerNodeRequirements()))))
 * ```
 * (The README's version is `test/readme/bot.ts`, run as a program by the tests.)
 *
 * Lifecycle. Each `start` or `reload` opens a *generation*: a `ShardManager` in a scope of
 * its own, with its event pump and status hook. Lifecycle operations are serialized (one at a
 * time, in call order); a generation's scope is closed — sockets torn down, heartbeats and
 * pumps interrupted — before the next one opens, so there is never more than one session
 * or socket per shard, and nothing of an old generation outlives it. A reload that keeps
 * token, intents and shards resumes the sessions (no identify spent); any other ends them
 * first (close 1000), so none is left behind. Closing the provider's scope (app shutdown)
 * interrupts the operation under way, refuses those queued behind it, then closes the
 * running generation (sessions kept resumable unless `onShutdown: "logout"`).
 *
 * Streams are hot: `events`, `inbound` and `messages` deliver what arrives while they run,
 * across reloads; start consuming before `start` to see READY. They are bounded: a slow
 * consumer slows the shards down (back-pressure; `events.strategy` can trade it for drops).
 */

import {
  type GatewayError,
  Intents,
  type Members,
  type Reshard,
  SessionStore,
  type ShardManager,
  type Soundboard,
} from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import type { GatewayPresenceUpdateData, GatewayVoiceStateUpdateData } from "discord-api-types/v10"
import {
  Config,
  ConfigProvider,
  Context,
  type Duration,
  Effect,
  Layer,
  Option,
  Result,
  type Scope,
  Stream,
} from "effect"
import { FetchHttpClient } from "effect/http"
import type * as Health from "./Health.ts"
import type * as Inbound from "./Inbound.ts"
import * as HealthView from "./internal/HealthView.ts"
import * as Lifecycle from "./internal/Lifecycle.ts"
import * as Shared from "./internal/Shared.ts"
import { GatewayNotRunning, type ProviderClosed, type SendError, type StartError } from "./ProviderError.ts"
import type * as Rest from "./Rest.ts"

/**
 * The shard manager's configuration, whole (token, intents, shards, compression, events,
 * limits, timeouts, policy…), and what only the provider does. It is handed on as one
 * record, so every option of a shard is an option of the provider. `events.capacity` (default
 * 1024) also sizes the provider's own buffers behind `events` and `inbound`.
 */
export interface ProviderConfig extends Omit<ShardManager.ShardManagerConfig, "identifyThrottle"> {
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
   * spending an identify, given a persistent session store: see `layerNodeRequirements`' `sessionStore`)
   * or end them (close 1000, the bot shows offline at once).
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

/** Why a start or reload failed: `GET /gateway/bot` or `GET /users/@me` did, or refused the token (401). */
export type { StartError }

export interface DiscordProviderService {
  /**
   * Connects (a new generation). Does nothing if running. Fails if `GET /gateway/bot` fails,
   * or `GET /users/@me`: asked while the shards connect, unless a READY or an earlier start
   * told who the bot is (a session resumed from a persistent store brings no READY).
   */
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
  /**
   * Discord's REST API, rate limits honoured, on the running configuration's client: any
   * route (`request`), reply with embeds or components, edit, delete, react, answer
   * interactions. Works whether or not the gateway runs.
   */
  readonly rest: Rest.RestClient
  /**
   * Presence Update (op 3) on every running shard, or on one. Shards identify again with
   * it after a new session; a `start` or `reload` identifies with the configuration's.
   */
  readonly updatePresence: (
    presence: GatewayPresenceUpdateData,
    options?: { readonly shardId?: number | undefined },
  ) => Effect.Effect<void, GatewayCommandError>
  /** Voice State Update (op 4), on the guild's shard. */
  readonly updateVoiceState: (state: GatewayVoiceStateUpdateData) => Effect.Effect<void, GatewayCommandError>
  /** Request Guild Members (op 8), on the guild's shard; a RATE_LIMITED answer fails it, typed. */
  readonly requestGuildMembers: (
    request: Members.RequestGuildMembers,
  ) => Effect.Effect<Members.GuildMembersResult, Members.GuildMembersError | GatewayCommandError>
  /** Request Soundboard Sounds (op 31): every asked guild's sounds, gathered from its shard. */
  readonly requestSoundboardSounds: (
    request: Soundboard.RequestSoundboardSounds,
  ) => Effect.Effect<
    Soundboard.SoundboardSoundsResult,
    Soundboard.SoundboardSoundsTimeout | GatewayCommandError
  >
  /**
   * Changes the running generation's shard count with no downtime (`ShardManager.reshard`:
   * a new set beside the old, each guild handed over, each event once and in order). A later
   * `start` or `reload` runs the configuration's count again (or Discord's recommendation).
   */
  readonly reshard: (count: number) => Effect.Effect<void, Reshard.ReshardError | GatewayNotRunning>
  /** The running generation's shard manager (any other gateway command), if any. */
  readonly manager: Effect.Effect<Option.Option<ShardManager.ShardManager>>
}

/** Why a gateway command was not carried out. */
export type GatewayCommandError =
  | GatewayNotRunning
  | ShardManager.ShardNotRunning
  | GatewayError.ShardStopped
  | GatewayError.PayloadTooLarge

export class DiscordProvider extends Context.Service<DiscordProvider, DiscordProviderService>()(
  "@vigil/provider/DiscordProvider",
) {}

export const make = Effect.fnUntraced(function* (
  initial: ProviderConfig,
): Effect.fn.Return<DiscordProviderService, never, Scope.Scope | Shared.Requirements> {
  const shared = yield* Shared.make(initial)
  const { start, stop, reload } = yield* Lifecycle.make(shared)
  const view = HealthView.make(shared)

  const send = (channelId: string, message: string | Rest.MessageOptions) =>
    Effect.suspend(() => shared.rest.sendMessage(channelId, message)).pipe(
      Effect.tap(() =>
        Effect.sync(() => {
          shared.outbound.sent++
        }),
      ),
      Effect.tapError((error) =>
        Effect.sync(() => {
          shared.outbound.failed[error._tag] = (shared.outbound.failed[error._tag] ?? 0) + 1
        }),
      ),
    )

  /** A gateway command, on the running generation's manager. */
  const onManager =
    (command: string) =>
    <A, E>(f: (manager: ShardManager.ShardManager) => Effect.Effect<A, E>) =>
      Effect.suspend((): Effect.Effect<A, E | GatewayNotRunning> => {
        const generation = shared.current
        return generation ? f(generation.manager) : Effect.fail(new GatewayNotRunning({ command }))
      })

  // A reload may replace the REST client: each call goes to the one in use.
  const rest: Rest.RestClient = {
    request: (options) => Effect.suspend(() => shared.rest.request(options)),
    sendMessage: (channelId, message) => Effect.suspend(() => shared.rest.sendMessage(channelId, message)),
    createMessage: (channelId, message) =>
      Effect.suspend(() => shared.rest.createMessage(channelId, message)),
    reply: (channelId, messageId, message) =>
      Effect.suspend(() => shared.rest.reply(channelId, messageId, message)),
    editMessage: (channelId, messageId, edit) =>
      Effect.suspend(() => shared.rest.editMessage(channelId, messageId, edit)),
    deleteMessage: (channelId, messageId, options) =>
      Effect.suspend(() => shared.rest.deleteMessage(channelId, messageId, options)),
    react: (channelId, messageId, emoji) =>
      Effect.suspend(() => shared.rest.react(channelId, messageId, emoji)),
    respondToInteraction: (interaction, response) =>
      Effect.suspend(() => shared.rest.respondToInteraction(interaction, response)),
    editInteractionResponse: (interaction, edit) =>
      Effect.suspend(() => shared.rest.editInteractionResponse(interaction, edit)),
    state: Effect.suspend(() => shared.rest.state),
  }

  // Message events are decoded only while someone consumes them (`inbound`, `messages`):
  // an app that reads only `events` does not pay for it.
  const inbound = Stream.suspend(() => {
    shared.inboundListeners++
    return Stream.fromPubSub(shared.inboundHub)
  }).pipe(
    Stream.ensuring(
      Effect.sync(() => {
        shared.inboundListeners--
      }),
    ),
  )
  const messages = inbound.pipe(
    Stream.tap((item) => (Result.isFailure(item) ? Effect.logWarning(item.failure.message) : Effect.void)),
    Stream.filterMap((item) => (Result.isSuccess(item) ? Result.succeed(item.success) : Result.failVoid)),
  )

  return {
    start,
    stop,
    reload,
    config: Effect.sync(() => shared.config),
    health: view.health,
    healthChanges: view.healthChanges,
    awaitReady: view.awaitReady,
    await: view.awaitFatal,
    events: Stream.fromPubSub(shared.eventsHub),
    inbound,
    messages,
    send,
    rest,
    updatePresence: (presence, options) =>
      onManager("updatePresence")((manager) => manager.updatePresence(presence, options)),
    updateVoiceState: (state) => onManager("updateVoiceState")((manager) => manager.updateVoiceState(state)),
    requestGuildMembers: (request) =>
      onManager("requestGuildMembers")((manager) => manager.requestGuildMembers(request)),
    requestSoundboardSounds: (request) =>
      onManager("requestSoundboardSounds")((manager) => manager.requestSoundboardSounds(request)),
    reshard: (count) => onManager("reshard")((manager) => manager.reshard(count)),
    manager: Effect.sync(() => Option.fromNullishOr(shared.current?.manager)),
  } satisfies DiscordProviderService
})

/** What the provider runs on: a gateway transport, a session store and an HttpClient. */
export type Requirements = Shared.Requirements

/** The provider, on the transport, session store and HttpClient the app provides (any runtime, tests). */
export const layer = (config: ProviderConfig): Layer.Layer<DiscordProvider, never, Requirements> =>
  Layer.effect(DiscordProvider)(make(config))

/**
 * The provider with its token and settings read through `Config`: `DISCORD_TOKEN` (required,
 * kept `Redacted`), `DISCORD_INTENTS` (a bitfield or `GatewayIntentBits` names, comma-separated)
 * and `DISCORD_API_URL` (the REST base, version included); `config` gives the rest, and the
 * defaults when a variable is absent. A missing or malformed variable fails with `ConfigError`.
 */
export const layerConfig = (
  config: Partial<ProviderConfig> = {},
): Layer.Layer<DiscordProvider, Config.ConfigError, Requirements> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const token = yield* Config.Redacted("DISCORD_TOKEN")
      const intentsText = yield* Config.option(Config.String("DISCORD_INTENTS"))
      const apiBaseUrl = yield* Config.option(Config.String("DISCORD_API_URL"))
      const intents = Option.isSome(intentsText) ? Intents.parse(intentsText.value) : config.intents
      if (intents === undefined) {
        const why = Option.isSome(intentsText)
          ? `DISCORD_INTENTS: not a bitfield nor GatewayIntentBits names: ${intentsText.value}`
          : "DISCORD_INTENTS: not set, and no intents given"
        return yield* Effect.fail(new Config.ConfigError(new ConfigProvider.SourceError({ message: why })))
      }
      const resolved: ProviderConfig = { ...config, token, intents }
      return layer(Option.isSome(apiBaseUrl) ? { ...resolved, apiBaseUrl: apiBaseUrl.value } : resolved)
    }),
  )

export interface NodeRequirementsOptions<E> {
  /**
   * Where sessions are kept. Default: in memory (they survive reconnects and reloads, not a
   * restart). `NodeSessionStore.layerFileSystem(dir)` from `@vigil/gateway-node`: a restarted
   * process resumes the sessions its predecessor kept (`onShutdown`, or a crash).
   */
  readonly sessionStore?: Layer.Layer<SessionStore.SessionStore, E> | undefined
}

/** The provider's requirements on Node: the WebSocket transport and codecs, fetch, a session store. */
export const layerNodeRequirements = <E = never>(
  options: NodeRequirementsOptions<E> = {},
): Layer.Layer<Requirements, E> =>
  Layer.mergeAll(
    NodeGateway.layer(),
    FetchHttpClient.layer,
    // Last, so that the store given stands in for the gateway layer's in-memory one.
    options.sessionStore ?? SessionStore.SessionStore.layerMemory,
  )
