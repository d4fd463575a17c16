/**
 * A runner's lease on one shard, on this process's clock: it holds for `fenceAfter` from the
 * moment the last successful renewal was *sent* (never received: the database stamped the
 * lease after that instant, so this side always lapses first), renewed every `renewInterval`.
 * A renewal that the database answers "superseded" (a newer epoch owns the shard) ends it for
 * good; a renewal that fails or hangs only lets it run out.
 *
 * `valid` is synchronous, for the hot path (each event before it reaches the app); `lapsed`
 * wakes whoever must stop the shard the instant the lease stops holding.
 */
import { Clock, Deferred, Duration, Effect, type Scope } from "effect"

export type Renewal = "Renewed" | "Superseded"

export type Lapse =
  /** A newer owner took the shard (its epoch is higher). */
  | { readonly _tag: "Superseded" }
  /** No renewal succeeded for `fenceAfter`: another runner may take the shard soon. */
  | { readonly _tag: "Expired"; readonly lastRenewedMillisAgo: number }

export interface LeaseOptions<E> {
  /** One renewal attempt. */
  readonly renew: Effect.Effect<Renewal, E>
  readonly renewInterval: Duration.Duration
  readonly fenceAfter: Duration.Duration
  /** When the acquisition that began the lease was sent (this clock's millis). */
  readonly since: number
}

export interface Lease {
  /** Whether this runner may still deliver and send for the shard. */
  readonly valid: () => boolean
  readonly superseded: () => boolean
  /** Waits until the lease stops holding, and says why (at once if it does not hold now). */
  readonly lapsed: Effect.Effect<Lapse>
  /** After a lapse: waits until a renewal holds again (true) or the lease is superseded (false). */
  readonly recovered: Effect.Effect<boolean>
  /** A write the database refused for this epoch: superseded now. */
  readonly supersede: Effect.Effect<void>
}

/** Starts the renewal loop in the current scope. */
export const make = Effect.fnUntraced(function* <E>(options: LeaseOptions<E>) {
  const clock = yield* Clock.Clock
  const now = () => clock.currentTimeMillisUnsafe()
  const fenceMillis = Duration.toMillis(options.fenceAfter)
  const renewMillis = Duration.toMillis(options.renewInterval)
  const superseded = yield* Deferred.make<void>()
  let heldUntil = options.since + fenceMillis
  let failures = 0

  const isSuperseded = () => Deferred.isDoneUnsafe(superseded)
  const valid = () => !isSuperseded() && now() < heldUntil

  const attempt = Effect.gen(function* () {
    const sentAt = now()
    // A renewal still unanswered at the next one's turn counts as failed.
    const result = yield* options.renew.pipe(Effect.timeoutOption(options.renewInterval), Effect.result)
    if (result._tag === "Success" && result.success._tag === "Some") {
      if (result.success.value === "Superseded") return yield* Deferred.succeed(superseded, undefined)
      if (failures > 0) yield* Effect.logInfo(`shard lease renewed again after ${failures} failed renewals`)
      failures = 0
      heldUntil = Math.max(heldUntil, sentAt + fenceMillis)
    } else {
      failures++
      const why = result._tag === "Failure" ? String(result.failure) : "no answer in time"
      if (failures === 1) yield* Effect.logWarning(`shard lease renewal failed (${why})`)
    }
    yield* Effect.sleep(Math.max(0, sentAt + renewMillis - now()))
  })

  yield* Effect.forkScoped(
    Effect.whileLoop({ while: () => !isSuperseded(), body: () => attempt, step: () => {} }),
  )

  const lapsed: Effect.Effect<Lapse> = Effect.suspend(() => {
    if (isSuperseded()) return Effect.succeed({ _tag: "Superseded" } as const)
    const left = heldUntil - now()
    if (left <= 0)
      return Effect.succeed({ _tag: "Expired", lastRenewedMillisAgo: fenceMillis - left } as const)
    // The lease may be extended meanwhile: look again when the current term ends.
    return Effect.raceFirst(Effect.sleep(left), Deferred.await(superseded)).pipe(Effect.andThen(lapsed))
  })

  const recovered: Effect.Effect<boolean> = Effect.suspend(() => {
    if (isSuperseded()) return Effect.succeed(false)
    if (valid()) return Effect.succeed(true)
    return Effect.raceFirst(Effect.sleep(renewMillis), Deferred.await(superseded)).pipe(
      Effect.andThen(recovered),
    )
  })

  return {
    valid,
    superseded: isSuperseded,
    lapsed,
    recovered,
    supersede: Deferred.succeed(superseded, undefined).pipe(Effect.asVoid),
  } satisfies Lease
}) as <E>(options: LeaseOptions<E>) => Effect.Effect<Lease, never, Scope.Scope>
