/**
 * The shard's session: id, last delivered sequence, resume URL. One record, one owner: the
 * shard's loop begins and forgets it, the delivery buffer advances its sequence, heartbeats
 * and Resume read it, and the store gets copies (each call bounded in time).
 */
import { Effect, Option } from "effect"
import type * as Protocol from "../Protocol.ts"
import type { StoredSession } from "../SessionStore.ts"
import type { BoundedStore } from "./BoundedStore.ts"

export interface Session {
  /** The session to resume, if any. */
  readonly current: () => StoredSession | undefined
  /** The last delivered sequence; null when nothing was delivered yet (READY may be 0). */
  readonly sequence: () => number | null
  /** An event with this sequence was handed over (or dropped by choice). */
  readonly advance: (seq: number) => void
  /** READY of a session other than the current one: a new session, saved at once. */
  readonly begin: (ready: Protocol.Ready) => Effect.Effect<void>
  /** The session is gone (identify next, logout, fatal stop). */
  readonly forget: Effect.Effect<void>
  /** Writes the current state to the store (or clears it). */
  readonly save: Effect.Effect<void>
}

/** Loads the stored session (ignored if it belongs to another shard count). */
export const make = Effect.fnUntraced(function* (store: BoundedStore, shardCount: number) {
  const stored = Option.getOrUndefined(yield* store.load)
  // Mutable: the sequence moves with every event (the hot path); the store gets copies.
  let record: Mutable<StoredSession> | undefined =
    stored && stored.shardCount === shardCount ? { ...stored } : undefined

  const save = Effect.suspend(() => (record ? store.save({ ...record }) : store.clear))
  return {
    current: () => record,
    sequence: () => record?.sequence ?? null,
    advance: (seq) => {
      if (record) record.sequence = seq
    },
    begin: (ready) =>
      Effect.suspend(() => {
        record = {
          sessionId: ready.session_id,
          sequence: null,
          resumeUrl: ready.resume_gateway_url,
          shardCount,
        }
        return save
      }),
    forget: Effect.suspend(() => {
      record = undefined
      return store.clear
    }),
    save,
  } satisfies Session
})

type Mutable<A> = { -readonly [K in keyof A]: A[K] }
