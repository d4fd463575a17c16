/**
 * A ShardManager's merged event buffer: every shard delivers straight into it (no pump per
 * shard). While a reshard runs, the consumer's side applies the handover filters
 * (`Handover.ts`) and runs markers: actions queued behind every event already in the buffer,
 * so they happen exactly when the consumer has seen all a closed shard sent. With no reshard
 * under way a read passes through untouched.
 *
 * A `sliding` buffer evicts its oldest item when full, and that may be a marker: then no one
 * would ever run it (the reshard waiting on it hangs, pending copies are never flushed). So
 * with `sliding`, while a marker is out, every event is stamped as it enters (`stamp`: there
 * the entry order is the offer order, nothing waits for room); a marker runs when the consumer
 * reaches it or, if it was evicted, an event stamped after it, whichever comes first.
 */
import { type Cause, Deferred, Effect, Queue, Stream } from "effect"
import type { ShardEvent } from "../ShardManager.ts"
import * as Delivery from "./Delivery.ts"
import type * as Handover from "./Handover.ts"

/** Queued behind every event already in the buffer: runs when the consumer reaches it. */
class Marker {
  readonly run: () => ReadonlyArray<ShardEvent>
  readonly done: Deferred.Deferred<void>
  /** The last stamp given before it (`sliding` only): events stamped later come after it. */
  readonly after: number
  ran = false
  constructor(run: () => ReadonlyArray<ShardEvent>, done: Deferred.Deferred<void>, after: number) {
    this.run = run
    this.done = done
    this.after = after
  }
}

/** What the buffer holds: shards' events, and the markers among them. */
export type Item = ShardEvent | Marker

export const make = Effect.fnUntraced(function* (options: {
  readonly capacity: number
  readonly strategy: Delivery.Strategy
}) {
  const queue = yield* Queue.make<Item, Cause.Done>({
    capacity: options.capacity,
    strategy: Delivery.queueStrategy(options.strategy),
  })
  /**
   * The handovers whose filter the consumer applies, newest first (a rollback runs a reverse
   * one beside; a committed one stays while its guilds drain, see `Handover.finished`).
   */
  const handovers: Array<Handover.Handover> = []
  /** Markers not run yet, oldest first. */
  const markers: Array<Marker> = []
  const sliding = options.strategy === "sliding"
  /** `sliding` only: each event's stamp, given while a marker is out. */
  const stamps = new WeakMap<ShardEvent, number>()
  let stamped = 0

  /** What every shard's `wrap` passes its event through as it is offered. */
  const stamp = (event: ShardEvent): ShardEvent => {
    if (sliding && markers.length > 0) stamps.set(event, ++stamped)
    return event
  }

  /** Runs `run` in the consumer, after every event queued before; waits for it. */
  const mark = (run: () => ReadonlyArray<ShardEvent>) =>
    Effect.gen(function* () {
      const done = yield* Deferred.make<void>()
      const marker = new Marker(run, done, stamped)
      // Counted first: the consumer may reach it as soon as it is in.
      markers.push(marker)
      // A `dropping` buffer refuses when full: the marker waits for room (it must not be lost).
      while (!(yield* Queue.offer(queue, marker))) yield* Effect.sleep(10)
      yield* Deferred.await(done)
    })

  const runMarker = (marker: Marker, out: Array<Handover.Tagged>) => {
    if (marker.ran) return
    marker.ran = true
    markers.splice(markers.indexOf(marker), 1)
    out.push(...marker.run())
    Deferred.doneUnsafe(marker.done, Effect.void)
  }

  /** The consumer's side: the handover filter, or nothing at all when no reshard runs. */
  const filter = (chunk: ReadonlyArray<Item>): ReadonlyArray<ShardEvent> => {
    if (handovers.length === 0 && markers.length === 0) return chunk as ReadonlyArray<ShardEvent>
    const out: Array<Handover.Tagged> = []
    for (const item of chunk) {
      if (item instanceof Marker) {
        // Older markers first: evicted, or (refused by a full `dropping` buffer) not in yet.
        // Here is after everything queued before them too.
        while (!item.ran) runMarker(markers[0]!, out)
        continue
      }
      if (sliding && markers.length > 0) {
        // Markers an eviction took out of the buffer: this event came after them.
        const n = stamps.get(item)
        while (n !== undefined && markers.length > 0 && markers[0]!.after < n) runMarker(markers[0]!, out)
      }
      const handover = handovers.find((h) => h.involves(item))
      if (handover === undefined) out.push(item)
      else handover.process(item, out)
    }
    // A committed reshard's filter stays until its guilds' new streams caught up (Handover.finished).
    for (let i = handovers.length - 1; i >= 0; i--) if (handovers[i]!.finished()) handovers.splice(i, 1)
    return out as ReadonlyArray<ShardEvent>
  }
  const pullFiltered = <E>(
    pull: Effect.Effect<ReadonlyArray<Item>, E>,
  ): Effect.Effect<readonly [ShardEvent, ...Array<ShardEvent>], E> =>
    Effect.flatMap(pull, (chunk) => {
      const out = filter(chunk)
      return out.length > 0
        ? Effect.succeed(out as readonly [ShardEvent, ...Array<ShardEvent>])
        : pullFiltered(pull)
    })

  return {
    /** What shards deliver into (`Shard.make`'s sink), each event through `stamp`. */
    queue,
    stamp,
    /** The one consumer's stream. */
    events: Stream.transformPull(Stream.fromQueue(queue), (pull) =>
      Effect.succeed(pullFiltered(pull)),
    ) as Stream.Stream<ShardEvent>,
    end: Queue.end(queue),
    handovers,
    mark,
  }
})

export type Merged = Effect.Success<ReturnType<typeof make>>
