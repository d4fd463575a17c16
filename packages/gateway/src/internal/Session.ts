/**
 * The shard's session: id, last delivered sequence, resume URL. One record, one owner: the
 * shard's loop begins and forgets it, the delivery buffer advances its sequence, heartbeats
 * and Resume read it, and the store gets copies (each call bounded in time).
 *
 * Copies are coalesced, not written per event: a new session (READY), RESUMED and the end of
 * each connection are saved at once; in between, a writer saves the moved sequence once
 * `events` events are unsaved or `interval` has passed, whichever comes first. So after a
 * crash the stored sequence is at most `events` events or `interval` (plus one write) behind
 * the last delivered one. A restarted process resumes from there: the server replays that
 * window, which the crashed process had delivered (at least once, never a gap).
 */
import { Duration, Effect, Latch, Semaphore } from "effect"
import type * as Protocol from "../Protocol.ts"
import type { SaveOptions, StoredSession } from "../SessionStore.ts"
import type { BoundedStore } from "./BoundedStore.ts"

export interface Session {
  /** The session to resume, if any. */
  readonly current: () => StoredSession | undefined
  /** The last delivered sequence; null when nothing was delivered yet (READY may be 0). */
  readonly sequence: () => number | null
  /** An event with this sequence was handed over (or dropped by choice). The hot path. */
  readonly advance: (seq: number) => void
  /** READY of a session other than the current one: a new session, saved at once. */
  readonly begin: (ready: Protocol.Ready) => Effect.Effect<void>
  /** The session is gone (identify next, logout, fatal stop). */
  readonly forget: Effect.Effect<void>
  /** Writes the current state to the store (or clears it), now. */
  readonly save: Effect.Effect<void>
}

export const defaultSaveInterval = Duration.seconds(1)
export const defaultSaveEvents = 1000

/** Loads the stored session and starts the coalescing writer in the current scope. */
export const make = Effect.fnUntraced(function* (store: BoundedStore, options: SaveOptions = {}) {
  const intervalMillis = Math.max(1, Duration.toMillis(options.interval ?? defaultSaveInterval))
  const eventsPerSave = Math.max(1, options.events ?? defaultSaveEvents)
  const loaded = yield* store.load
  // Mutable: the sequence moves with every event (the hot path); the store gets copies.
  let record: Mutable<StoredSession> | undefined = loaded._tag === "Some" ? { ...loaded.value } : undefined
  let unsaved = 0
  // `moved`: something is unsaved (the writer wakes); `due`: `events` are (it writes now).
  // An idle shard's writer sleeps on `moved`: no timer, no wake-up.
  const moved = Latch.makeUnsafe(false)
  const due = Latch.makeUnsafe(false)
  // One write at a time, each of the record as it is when the write starts: a slow periodic
  // write can never land after a `forget` and bring a dead session back.
  const lock = yield* Semaphore.make(1)

  const save = lock.withPermit(
    Effect.suspend(() => {
      unsaved = 0
      return record ? store.save({ ...record }) : store.clear
    }),
  )
  const saveIfMoved = Effect.suspend(() => (unsaved > 0 ? save : Effect.void))

  yield* Effect.forkScoped(
    Effect.forever(
      moved.await.pipe(
        Effect.andThen(Effect.raceFirst(Effect.sleep(intervalMillis), due.await)),
        Effect.andThen(Effect.all([moved.close, due.close])),
        Effect.andThen(saveIfMoved),
      ),
    ),
  )

  return {
    current: () => record,
    sequence: () => record?.sequence ?? null,
    advance: (seq) => {
      if (!record) return
      record.sequence = seq
      if (++unsaved === 1) moved.openUnsafe()
      if (unsaved === eventsPerSave) due.openUnsafe()
    },
    begin: (ready) =>
      Effect.suspend(() => {
        record = { sessionId: ready.session_id, sequence: null, resumeUrl: ready.resume_gateway_url }
        return save
      }),
    forget: Effect.suspend(() => {
      record = undefined
      return save
    }),
    save,
  } satisfies Session
})

type Mutable<A> = { -readonly [K in keyof A]: A[K] }
