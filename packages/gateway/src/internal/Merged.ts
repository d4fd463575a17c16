/**
 * A ShardManager's merged event buffer: every shard delivers straight into it (no pump per
 * shard). While a reshard runs, the consumer's side applies the handover filters
 * (`Handover.ts`) and runs markers: actions queued behind every event already in the buffer,
 * so they happen exactly when the consumer has seen all a closed shard sent. With no reshard
 * under way a read passes through untouched.
 */
import { type Cause, Deferred, Effect, Queue, Stream } from "effect"
import type { ShardEvent } from "../ShardManager.ts"
import * as Delivery from "./Delivery.ts"
import type * as Handover from "./Handover.ts"

/** Queued behind every event already in the buffer: runs when the consumer reaches it. */
class Marker {
  readonly run: () => ReadonlyArray<ShardEvent>
  readonly done: Deferred.Deferred<void>
  constructor(run: () => ReadonlyArray<ShardEvent>, done: Deferred.Deferred<void>) {
    this.run = run
    this.done = done
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
  let markers = 0

  /** Runs `run` in the consumer, after every event queued before; waits for it. */
  const mark = (run: () => ReadonlyArray<ShardEvent>) =>
    Effect.gen(function* () {
      const done = yield* Deferred.make<void>()
      const marker = new Marker(run, done)
      // Counted first: the consumer may reach it as soon as it is in.
      markers++
      // A `dropping` buffer refuses when full: the marker waits for room (it must not be lost).
      while (!(yield* Queue.offer(queue, marker))) yield* Effect.sleep(10)
      yield* Deferred.await(done)
    })

  /** The consumer's side: the handover filter, or nothing at all when no reshard runs. */
  const filter = (chunk: ReadonlyArray<Item>): ReadonlyArray<ShardEvent> => {
    if (handovers.length === 0 && markers === 0) return chunk as ReadonlyArray<ShardEvent>
    const out: Array<Handover.Tagged> = []
    for (const item of chunk) {
      if (item instanceof Marker) {
        markers--
        out.push(...item.run())
        Deferred.doneUnsafe(item.done, Effect.void)
        continue
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
    /** What shards deliver into (`Shard.make`'s sink). */
    queue,
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
