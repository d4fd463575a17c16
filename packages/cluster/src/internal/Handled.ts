/**
 * The sequence a shard saves must never pass what its app has finished handling: the shard
 * counts an event delivered once it is in its buffer, and a runner that stops without handing
 * the buffer over (fenced, killed) would otherwise leave a saved sequence past events its app
 * never saw, and the next owner would resume after them: lost.
 *
 * The app's stream is pulled one event at a time; taking the next one (or the stream's end)
 * means the app is done with the previous one. (So while the app waits, its last event still
 * counts as in its hands: a crash then replays it once more, never loses it.) The store in between writes the shard's session
 * with its sequence lowered to that, per session: events of a new session count only once the
 * app has reached its READY (until then the previous row stays). `flush` writes the last session
 * asked for again, once a graceful leave has let the app finish its buffer. A save held back is
 * written again once the app catches up (at most once per `interval`), so a quiet shard's row
 * does not stay behind.
 */
import type { Protocol, SessionStore } from "@vigil/gateway"
import { type Duration, Effect, Latch, type Scope, Stream } from "effect"

export interface Handled {
  /** Records each pull of the app's stream, which must hand over one event per pull. */
  readonly track: (events: Stream.Stream<Protocol.Dispatch>) => Stream.Stream<Protocol.Dispatch>
  /** `store`, with every save held back to what the app has handled. */
  readonly store: (store: SessionStore.SessionStoreService) => SessionStore.SessionStoreService
  /** Saves the last session asked for again, with what the app has handled by now. */
  readonly flush: Effect.Effect<void>
}

export const make = Effect.fnUntraced(function* (interval: Duration.Input) {
  /** The session the app's events belong to, and the last of them it finished. */
  let session: string | undefined
  let done: number | null = null
  let inHand: number | undefined
  let asked: SessionStore.StoredSession | undefined
  let target:
    | { readonly store: SessionStore.SessionStoreService; readonly key: SessionStore.ShardKey }
    | undefined
  /** The last write was held back below what was asked. */
  let behind = false
  const caughtUp = Latch.makeUnsafe(false)

  const finish = () => {
    if (inHand !== undefined) done = inHand
    inHand = undefined
  }
  const pulled = (event: Protocol.Dispatch) => {
    finish()
    if (event.type === "READY") {
      session = (event.data as { readonly session_id?: unknown }).session_id as string | undefined
      done = null
    }
    inHand = event.seq
    if (behind) caughtUp.openUnsafe()
  }

  const write = (store: SessionStore.SessionStoreService, key: SessionStore.ShardKey) =>
    Effect.suspend(() => {
      const wanted = asked
      if (wanted === undefined) return Effect.void
      // A session the app has not reached yet: keep the row of the one it is in.
      if (wanted.sessionId !== session) {
        behind = true
        return Effect.void
      }
      const sequence = wanted.sequence === null || done === null ? null : Math.min(wanted.sequence, done)
      behind = sequence !== wanted.sequence
      return store.save(key, { ...wanted, sequence })
    })

  const flush = Effect.suspend(() => (target ? write(target.store, target.key) : Effect.void))
  yield* Effect.forkScoped(
    Effect.forever(
      caughtUp.await.pipe(
        Effect.andThen(caughtUp.close),
        Effect.andThen(flush),
        Effect.andThen(Effect.sleep(interval)),
      ),
    ),
  )

  return {
    track: (events) =>
      events.pipe(
        Stream.tap((event) => Effect.sync(() => pulled(event))),
        Stream.onEnd(Effect.sync(finish)),
      ),
    store: (store) => ({
      load: (key) =>
        store.load(key).pipe(
          Effect.tap((loaded) =>
            Effect.sync(() => {
              // A resumed session: the app starts where the last owner's app had finished.
              if (loaded._tag === "Some") {
                session = loaded.value.sessionId
                done = loaded.value.sequence
              }
            }),
          ),
        ),
      save: (key, wanted) =>
        Effect.suspend(() => {
          asked = wanted
          target = { store, key }
          return write(store, key)
        }),
      clear: (key) =>
        Effect.suspend(() => {
          asked = undefined
          return store.clear(key)
        }),
    }),
    flush,
  } satisfies Handled
}) as (interval: Duration.Input) => Effect.Effect<Handled, never, Scope.Scope>
