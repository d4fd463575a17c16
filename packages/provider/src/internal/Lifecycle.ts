/**
 * `start`, `stop` and `reload`, one at a time in call order, and the shutdown that closes
 * the provider's scope: it interrupts the operation under way (a generation half opened is
 * closed again; closing one is never interrupted), refuses those queued behind it, then
 * closes the running generation.
 */
import { Deferred, Effect, Exit, PubSub, Redacted, Semaphore } from "effect"
import type { ProviderConfig, StopOptions } from "../DiscordProvider.ts"
import { ProviderClosed } from "../ProviderError.ts"
import * as Rest from "../Rest.ts"
import * as Generation from "./Generation.ts"
import { restConfig, type Shared, setState } from "./Shared.ts"

export const make = Effect.fnUntraced(function* (shared: Shared) {
  const lock = yield* Semaphore.make(1)
  let closed = false

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
            : Effect.raceFirst(
                body,
                Effect.andThen(Deferred.await(shared.shuttingDown), Effect.fail(refused)),
              ),
      ),
    )
  }

  const openWith = (config: ProviderConfig) =>
    Effect.onExit(Generation.open(shared, config), (exit) =>
      setState(shared, Exit.isSuccess(exit) ? "Running" : "Stopped"),
    )

  const start = serialized(
    "start",
    Effect.gen(function* () {
      if (shared.current !== undefined) return
      yield* setState(shared, "Starting")
      yield* openWith(shared.config)
    }),
  )

  const stop = (options: StopOptions = {}) =>
    serialized(
      "stop",
      Effect.gen(function* () {
        const generation = shared.current
        if (generation === undefined) return
        yield* setState(shared, "Stopping")
        yield* Generation.close(shared, generation, options.session ?? "end")
        yield* setState(shared, "Stopped")
      }),
    ).pipe(Effect.catchTag("ProviderClosed", () => Effect.void))

  const reload = (next: ProviderConfig) =>
    serialized(
      "reload",
      Effect.gen(function* () {
        const previous = shared.config
        shared.config = next
        const otherBot = Redacted.value(previous.token) !== Redacted.value(next.token)
        const restChanged =
          otherBot ||
          previous.apiBaseUrl !== next.apiBaseUrl ||
          JSON.stringify(previous.rest ?? null) !== JSON.stringify(next.rest ?? null)
        if (restChanged)
          shared.rest = yield* Rest.make(restConfig(next)).pipe(Effect.provideContext(shared.context))
        if (otherBot) shared.botUser = undefined
        const generation = shared.current
        if (generation === undefined) return
        yield* setState(shared, "Reloading")
        yield* Generation.close(
          shared,
          generation,
          Generation.sessionsCarryOver(generation.config, next) ? "keep" : "end",
        )
        yield* openWith(next)
      }),
    )

  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      closed = true // operations queued behind the lock now find the provider closed
      yield* Deferred.succeed(shared.shuttingDown, undefined)
      yield* Semaphore.withPermits(
        lock,
        1,
      )(
        Effect.gen(function* () {
          const generation = shared.current
          if (generation !== undefined) {
            yield* Generation.close(
              shared,
              generation,
              shared.config.onShutdown === "logout" ? "end" : "keep",
            )
          }
          shared.state = "Closed"
        }),
      )
      yield* Deferred.succeed(shared.closed, undefined)
      yield* PubSub.shutdown(shared.eventsHub)
      yield* PubSub.shutdown(shared.inboundHub)
      yield* PubSub.shutdown(shared.changed)
    }),
  )

  return { start, stop, reload }
})
