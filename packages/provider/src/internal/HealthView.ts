/**
 * The provider seen from outside: a health snapshot, the stream of them, and the waits for
 * readiness or a fatal stop.
 */
import { Clock, Deferred, type Duration, Effect, Option, PubSub, Stream, SubscriptionRef } from "effect"
import type { FatalError } from "../DiscordProvider.ts"
import * as Health from "../Health.ts"
import { ProviderClosed } from "../ProviderError.ts"
import { type Shared, summary } from "./Shared.ts"

export const make = (shared: Shared) => {
  const health = Effect.gen(function* () {
    const at = yield* Clock.currentTimeMillis
    const generation = shared.current
    const shards = generation
      ? (yield* generation.manager.health).map((h) =>
          Health.shardReport(h, { ...(generation.errors.get(h.shard[0]) ?? {}) }),
        )
      : []
    const fatal = Option.getOrUndefined(yield* SubscriptionRef.get(shared.fatal))
    const limits = yield* shared.rest.state
    return {
      at,
      state: shared.state,
      generation: shared.generations,
      ready:
        shared.state === "Running" &&
        shared.botUser !== undefined &&
        shards.length > 0 &&
        shards.every((s) => s.state._tag === "Ready"),
      botUser: shared.botUser,
      fatal: fatal ? summary(fatal) : undefined,
      startError: shared.startError,
      shards,
      inbound: { ...shared.inbound },
      outbound: {
        sent: shared.outbound.sent,
        failed: { ...shared.outbound.failed },
        requests: limits.requests,
        rateLimited: limits.rateLimited,
        retries: limits.retries,
      },
    } satisfies Health.ProviderHealth
  })

  const healthChanges = (options: { readonly every?: Duration.Input | undefined } = {}) =>
    Stream.unwrap(
      Effect.map(PubSub.subscribe(shared.changed), (subscription) => {
        const ticks = Stream.concat(Stream.succeed(undefined), Stream.fromSubscription(subscription))
        const all = options.every === undefined ? ticks : Stream.merge(ticks, Stream.tick(options.every))
        return Stream.mapEffect(all, () => health)
      }),
    ).pipe(Stream.interruptWhen(Deferred.await(shared.closed)))

  const awaitFatal: Effect.Effect<void, FatalError> = Effect.raceFirst(
    Stream.runForEach(SubscriptionRef.changes(shared.fatal), (fatal) =>
      Option.isSome(fatal) ? Effect.fail(fatal.value) : Effect.void,
    ),
    Deferred.await(shared.closed),
  )

  const awaitReady: Effect.Effect<void, FatalError | ProviderClosed> = Effect.raceFirst(
    Effect.flatMap(Stream.runHead(Stream.filter(healthChanges(), (h) => h.ready)), (ready) =>
      Option.isSome(ready) ? Effect.void : Effect.fail(new ProviderClosed({ operation: "awaitReady" })),
    ),
    Effect.andThen(awaitFatal, Effect.fail(new ProviderClosed({ operation: "awaitReady" }))),
  )

  return { health, healthChanges, awaitFatal, awaitReady }
}
