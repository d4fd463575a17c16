/**
 * A generation: what one `start` or `reload` runs — a `ShardManager` in a scope of its own,
 * with the pump that hands its events on, a status hook that counts how connections end, and
 * a fiber that records a fatal stop. Closing its scope ends all of it.
 */
import { GatewayInfo, Intents, type Shard, ShardManager } from "@vigil/gateway"
import {
  Effect,
  Equal,
  Exit,
  Option,
  PubSub,
  Redacted,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef,
} from "effect"
import type { ProviderConfig } from "../DiscordProvider.ts"
import type { StartError } from "../ProviderError.ts"
import * as BotUser from "./BotUser.ts"
import { pump } from "./Pump.ts"
import { type Shared, signal, summary } from "./Shared.ts"

export interface Generation {
  readonly id: number
  readonly scope: Scope.Closeable
  readonly manager: ShardManager.ShardManager
  readonly config: ProviderConfig
  /** Per shard: connection endings counted by error tag. */
  readonly errors: Map<number, Record<string, number>>
}

const sameSelection = (a: ProviderConfig["shards"], b: ProviderConfig["shards"]) =>
  JSON.stringify(a ?? null) === JSON.stringify(b ?? null)

/** Whether the sessions of a generation run with `a` can be resumed by one run with `b`. */
export const sessionsCarryOver = (a: ProviderConfig, b: ProviderConfig): boolean =>
  Redacted.value(a.token) === Redacted.value(b.token) &&
  Intents.bitfield(a.intents) === Intents.bitfield(b.intents) &&
  a.shardCount !== undefined &&
  a.shardCount === b.shardCount &&
  sameSelection(a.shards, b.shards)

/**
 * Counts how each shard's connections end and signals each change of a shard's status: a
 * hook every shard calls as its status changes (no fiber per shard).
 */
const watcher =
  (shared: Shared, errors: Generation["errors"], app: ProviderConfig["onStatus"]) =>
  (next: Shard.ShardStatus, previous: Shard.ShardStatus): void => {
    app?.(next, previous)
    if (next.lastError !== undefined && next.lastError !== previous.lastError) {
      const shardId = next.shard[0]
      const counts = errors.get(shardId) ?? {}
      counts[next.lastError.tag] = (counts[next.lastError.tag] ?? 0) + 1
      errors.set(shardId, counts)
    }
    PubSub.publishUnsafe(shared.changed, undefined)
  }

/**
 * Opens a generation with `config` and makes it the current one. A bot not yet known is
 * asked for (`GET /users/@me`) while its shards connect, before their events are handed on.
 */
export const open = (shared: Shared, config: ProviderConfig): Effect.Effect<void, StartError> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const id = ++shared.generations
    yield* SubscriptionRef.set(shared.fatal, Option.none())
    // The identify limits belong to the bot, not to one generation: a reload for the same
    // token keeps its buckets and daily budget, so it cannot identify too fast.
    const limits = shared.identifyLimits
    const sameBot = limits !== undefined && Equal.equals(limits.token, config.token)
    const startTries = (config.startRetries ?? 5) + 1
    let tries = 0
    const errors: Generation["errors"] = new Map()
    const opened = Effect.gen(function* () {
      const manager = yield* ShardManager.make({
        ...config,
        identifyThrottle: sameBot ? limits.throttle : undefined,
        onStatus: watcher(shared, errors, config.onStatus),
      }).pipe(
        Scope.provide(scope),
        Effect.provideContext(shared.context),
        // Each try an outage failed is logged as it happens, with its cause: a start that retries
        // for seconds must not be silent. A refused token or a bad URL fails at once, to the
        // caller, who decides what to say.
        Effect.tapError((error) => {
          tries++
          return error._tag === "GatewayInfoError" && GatewayInfo.isTransient(error)
            ? Effect.logWarning(`start: try ${tries} of ${startTries}: ${error.message}`)
            : Effect.void
        }),
        // An outage (no answer, 5xx) is worth a few more tries; a refused token or a bad URL is not.
        Effect.retry({
          schedule: Schedule.exponential(200, 2),
          times: startTries - 1,
          while: (error) => error._tag === "GatewayInfoError" && GatewayInfo.isTransient(error),
        }),
      )
      shared.identifyLimits = { token: config.token, throttle: manager.identifyThrottle }
      // A resumed session brings no READY, yet the bot's own messages (replayed ones too)
      // must be told apart: the pump starts once the bot is known.
      if (shared.botUser === undefined) shared.botUser = yield* BotUser.fetch(shared.rest)
      return manager
    })
    const manager = yield* opened.pipe(
      Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit))),
    )
    const generation: Generation = { id, scope, manager, config, errors }
    yield* Effect.forkIn(Stream.runForEachArray(manager.events, pump(shared)), scope)
    yield* Effect.forkIn(
      Effect.catch(manager.await, (error) =>
        Effect.andThen(SubscriptionRef.set(shared.fatal, Option.some(error)), signal(shared)),
      ),
      scope,
    )
    shared.current = generation
    shared.startError = undefined
  }).pipe(
    Effect.tapError((error) =>
      Effect.sync(() => {
        shared.startError = summary(error)
      }),
    ),
  )

/**
 * Closes a generation: its sessions ended first if asked (close 1000, within the logout
 * timeout), then its scope. Never interrupted halfway.
 */
export const close = (shared: Shared, generation: Generation, session: "end" | "keep") =>
  Effect.uninterruptible(
    Effect.gen(function* () {
      shared.current = undefined
      if (session === "end") {
        const shards = generation.manager.shardIds.flatMap((id) => {
          const shard = generation.manager.shard(id)
          return shard ? [shard] : []
        })
        yield* Effect.forEach(shards, (shard) => shard.logout, {
          concurrency: "unbounded",
          discard: true,
        }).pipe(Effect.timeoutOption(shared.config.logoutTimeout ?? 5_000))
      }
      yield* Scope.close(generation.scope, Exit.void)
    }),
  )
