/**
 * The shard's event buffer: hands dispatches to the consumer's bounded queue, drops what a
 * resume replays a second time, and moves the session's sequence as each event is accepted.
 * The buffer outlives connections; the session it advances is the shard's.
 */
import { type Cause, Clock, Effect, identity, Queue, Stream } from "effect"
import type * as Protocol from "../Protocol.ts"
import type { Session } from "./Session.ts"

export type Strategy = "backpressure" | "dropping" | "sliding"

export interface DeliveryOptions {
  readonly capacity: number
  readonly strategy: Strategy
  /** Whose sequence this buffer reads and advances. */
  readonly session: Session
  /** Sees every accepted dispatch (member chunks are correlated here). */
  readonly observe: (dispatch: Protocol.Dispatch) => void
  /**
   * Where accepted dispatches go: by default a buffer of the shard's own (`events`); a
   * ShardManager passes its merged one, shared by all its shards, so no pump sits between
   * them. Then `events` is empty and `end` leaves the shared buffer open.
   */
  readonly into?: Sink<any> | undefined
}

export interface Sink<A> {
  readonly queue: Queue.Queue<A, Cause.Done>
  readonly wrap: (dispatch: Protocol.Dispatch) => A
}

export interface DeliveryStats {
  readonly lastEventAt: number | undefined
  readonly delivered: number
  /** Replayed dispatches dropped because they had already been delivered. */
  readonly duplicates: number
  /** Events dropped by a `dropping`/`sliding` buffer. */
  readonly dropped: number
  /** Events waiting for the consumer. */
  readonly queued: number
}

export interface Delivery {
  readonly events: Stream.Stream<Protocol.Dispatch>
  /** Hands a batch over, in order, skipping what was already delivered. */
  readonly deliver: (batch: ReadonlyArray<Protocol.Dispatch>) => Effect.Effect<void>
  /** Ends the consumer's stream. */
  readonly end: Effect.Effect<void>
  readonly stats: () => DeliveryStats
}

export const make = Effect.fnUntraced(function* (options: DeliveryOptions) {
  const { capacity, strategy, session, observe, into } = options
  // Read synchronously per batch on the hot path (TestClock in tests, as everywhere).
  const clock = yield* Clock.Clock
  const queue: Queue.Queue<unknown, Cause.Done> =
    into?.queue ?? (yield* Queue.make<unknown, Cause.Done>({ capacity, strategy: queueStrategy(strategy) }))
  const wrap: (dispatch: Protocol.Dispatch) => unknown = into?.wrap ?? identity
  let lastEventAt: number | undefined
  let delivered = 0
  let duplicates = 0
  let dropped = 0

  const accept = (dispatch: Protocol.Dispatch) => {
    observe(dispatch)
    delivered++
    session.advance(dispatch.seq)
  }

  /**
   * The hot path: synchronous while the queue has room; when it is full (back-pressure) it
   * waits for that one event, then goes on. The sequence advances event by event as each is
   * accepted, so an interruption at any point leaves it exact: a resume replays from there,
   * nothing lost, nothing twice.
   */
  const deliver = (batch: ReadonlyArray<Protocol.Dispatch>, from = 0): Effect.Effect<void> =>
    Effect.suspend(() => {
      for (let i = from; i < batch.length; i++) {
        const dispatch = batch[i]!
        // A resume replays what followed the sequence we sent; anything already handed over
        // (by sequence, within the same session) is dropped here. `null`: nothing yet, so
        // no assumption about where numbering starts (READY may be 0).
        const sequence = session.sequence()
        if (sequence !== null && dispatch.seq <= sequence) {
          duplicates++
          continue
        }
        if (strategy === "sliding" && Queue.sizeUnsafe(queue) >= capacity) dropped++
        const item = wrap(dispatch)
        if (!Queue.offerUnsafe(queue, item)) {
          if (strategy === "dropping") {
            dropped++ // by choice: the sequence moves past it, a resume will not bring it back
            session.advance(dispatch.seq)
            continue
          }
          return Effect.flatMap(Queue.offer(queue, item), () => {
            accept(dispatch)
            return deliver(batch, i + 1)
          })
        }
        accept(dispatch)
      }
      lastEventAt = clock.currentTimeMillisUnsafe()
      return session.advanced
    })

  return {
    events: into ? Stream.empty : (Stream.fromQueue(queue) as Stream.Stream<Protocol.Dispatch>),
    deliver: (batch) => deliver(batch),
    end: into ? Effect.void : Queue.end(queue).pipe(Effect.asVoid),
    stats: () => ({ lastEventAt, delivered, duplicates, dropped, queued: Queue.sizeUnsafe(queue) }),
  } satisfies Delivery
})

/** The queue strategy of a delivery strategy. */
export const queueStrategy = (strategy: Strategy): "suspend" | "dropping" | "sliding" =>
  strategy === "backpressure" ? "suspend" : strategy
