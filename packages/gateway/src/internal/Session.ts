/**
 * The shard's session: id, last delivered sequence, resume URL. One record, one owner: the
 * shard's loop begins and forgets it, the delivery buffer advances its sequence, heartbeats
 * and Resume read it, and the store gets copies (each call bounded in time).
 *
 * Copies are coalesced, not written per event: a new session (READY), RESUMED and the end of
 * each connection are saved at once; in between, the moved sequence is saved once `events`
 * events are unsaved or `interval` has passed since the first of them, whichever comes first.
 * So after a crash the stored sequence is at most `events` events or `interval` (plus one
 * write) behind the last delivered one. A restarted process resumes from there: the server
 * replays that window, which the crashed process had delivered (at least once, never a gap).
 *
 * Those writes run in fibers forked only while something is unsaved: an idle shard has no
 * writer, no timer and no wake-up.
 */
import { Duration, Effect, Semaphore } from "effect"
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
  /** After a batch of `advance`s: schedules the write they call for, if none is scheduled. */
  readonly advanced: Effect.Effect<void>
  /** READY of a session other than the current one: a new session, saved at once. */
  readonly begin: (ready: Protocol.Ready) => Effect.Effect<void>
  /** The session is gone (identify next, logout, fatal stop). */
  readonly forget: Effect.Effect<void>
  /** Writes the current state to the store (or clears it), now. */
  readonly save: Effect.Effect<void>
}

export const defaultSaveInterval = Duration.seconds(1)
export const defaultSaveEvents = 1000

/** Loads the stored session; its coalesced writes run in the current scope. */
export const make = Effect.fnUntraced(function* (store: BoundedStore, options: SaveOptions = {}) {
  const intervalMillis = Math.max(1, Duration.toMillis(options.interval ?? defaultSaveInterval))
  const eventsPerSave = Math.max(1, options.events ?? defaultSaveEvents)
  const scope = yield* Effect.scope
  const loaded = yield* store.load
  // Mutable: the sequence moves with every event (the hot path); the store gets copies.
  let record: Mutable<StoredSession> | undefined = loaded._tag === "Some" ? { ...loaded.value } : undefined
  let unsaved = 0
  let timed = false // a write is due `interval` after the first unsaved event
  let counted = false // a write is due now: `events` are unsaved
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
  const afterInterval = Effect.sleep(intervalMillis).pipe(
    Effect.andThen(
      Effect.sync(() => {
        timed = false
      }),
    ),
    Effect.andThen(saveIfMoved),
  )
  const now = Effect.ensuring(
    saveIfMoved,
    Effect.sync(() => {
      counted = false
    }),
  )

  return {
    current: () => record,
    sequence: () => record?.sequence ?? null,
    advance: (seq) => {
      if (!record) return
      record.sequence = seq
      unsaved++
    },
    advanced: Effect.suspend(() => {
      if (unsaved === 0) return Effect.void
      let writes: Effect.Effect<unknown> = Effect.void
      if (!timed) {
        timed = true
        writes = Effect.forkIn(afterInterval, scope)
      }
      if (unsaved >= eventsPerSave && !counted) {
        counted = true
        writes = Effect.andThen(writes, Effect.forkIn(now, scope))
      }
      return Effect.asVoid(writes)
    }),
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
