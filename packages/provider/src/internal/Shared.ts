/**
 * What the provider's parts share for its whole life: the hubs its streams read, the
 * signals of change and shutdown, and the few values that outlive a generation (the
 * configuration, the running generation, the bot's user, the counters).
 */
import type { IdentifyThrottle, SessionStore, ShardManager, Transport } from "@vigil/gateway"
import { type Context, Deferred, Effect, Option, PubSub, type Redacted, SubscriptionRef } from "effect"
import type { HttpClient } from "effect/http"
import type { FatalError, ProviderConfig } from "../DiscordProvider.ts"
import type * as Health from "../Health.ts"
import type * as Inbound from "../Inbound.ts"
import * as Rest from "../Rest.ts"
import type { Generation } from "./Generation.ts"

/** What a generation runs on: transport, session store, HttpClient (and codecs, tracer…). */
export type Requirements = Transport.GatewayTransport | SessionStore.SessionStore | HttpClient.HttpClient

export interface Shared {
  readonly context: Context.Context<Requirements>
  readonly eventsHub: PubSub.PubSub<ShardManager.ShardEvent>
  readonly inboundHub: PubSub.PubSub<Inbound.Inbound>
  /** A snapshot of health may have changed (sliding: a slow reader gets the latest). */
  readonly changed: PubSub.PubSub<void>
  /** The fatal error the running generation stopped with, if any. */
  readonly fatal: SubscriptionRef.SubscriptionRef<Option.Option<FatalError>>
  /** The provider's scope closed and it finished shutting down. */
  readonly closed: Deferred.Deferred<void>
  /** The provider's scope began to close: lifecycle operations are refused from now on. */
  readonly shuttingDown: Deferred.Deferred<void>

  config: ProviderConfig
  state: Health.ProviderState
  current: Generation | undefined
  generations: number
  /** The identify limits belong to the bot, not to a generation (see `Generation.open`). */
  identifyLimits:
    | {
        readonly token: Redacted.Redacted<string>
        readonly throttle: IdentifyThrottle.IdentifyThrottleService
      }
    | undefined
  startError: Health.ErrorSummary | undefined
  /** From READY, or `GET /users/@me` when a start finds it unknown (see `Generation.open`). */
  botUser: Inbound.BotUser | undefined
  rest: Rest.RestClient
  readonly inbound: { messages: number; malformed: number; ownSkipped: number }
  /** Consumers of `inbound` / `messages` running now; none, and nothing is decoded. */
  inboundListeners: number
  readonly outbound: { sent: number; readonly failed: Record<string, number> }
}

export const restConfig = (config: ProviderConfig): Rest.RestConfig => ({
  ...config.rest,
  token: config.token,
  apiBaseUrl: config.apiBaseUrl,
})

export const make = Effect.fnUntraced(function* (initial: ProviderConfig) {
  const context = yield* Effect.context<Requirements>()
  const capacity = initial.events?.capacity ?? 1024
  return {
    context,
    eventsHub: yield* PubSub.bounded<ShardManager.ShardEvent>(capacity),
    inboundHub: yield* PubSub.bounded<Inbound.Inbound>(capacity),
    changed: yield* PubSub.sliding<void>(1),
    fatal: yield* SubscriptionRef.make<Option.Option<FatalError>>(Option.none()),
    closed: yield* Deferred.make<void>(),
    shuttingDown: yield* Deferred.make<void>(),
    config: initial,
    state: "Stopped",
    current: undefined,
    generations: 0,
    identifyLimits: undefined,
    startError: undefined,
    botUser: undefined,
    rest: yield* Rest.make(restConfig(initial)).pipe(Effect.provideContext(context)),
    inbound: { messages: 0, malformed: 0, ownSkipped: 0 },
    inboundListeners: 0,
    outbound: { sent: 0, failed: {} },
  } satisfies Shared as Shared
})

export const signal = (shared: Shared): Effect.Effect<void> =>
  PubSub.publish(shared.changed, undefined).pipe(Effect.asVoid)

export const setState = (shared: Shared, next: Health.ProviderState): Effect.Effect<void> =>
  Effect.suspend(() => {
    shared.state = next
    return signal(shared)
  })

export const summary = (error: { readonly _tag: string; readonly message: string }): Health.ErrorSummary => ({
  tag: error._tag,
  message: error.message,
})
