/**
 * Commands a shard sends (presence, voice state, request guild members, …). They outlive
 * connections: a command sent while disconnected waits, and the next connection flushes it
 * after READY/RESUMED, through that connection's send limiter. A command leaves the outbox
 * only once it was written, so a connection dying mid-flush loses nothing. Once the shard
 * stops for good, waiting and later commands fail with `ShardStopped` instead of waiting.
 */
import { Deferred, Effect } from "effect"
import { PayloadTooLarge, type ShardStopped, type TransportError } from "./GatewayError.ts"
import * as Protocol from "./Protocol.ts"

interface Pending {
  readonly payload: string
  readonly written: Deferred.Deferred<void, ShardStopped>
}

export interface Outbox {
  /**
   * Queues a command and waits until it is written to a connection. Refused before
   * queueing when the payload exceeds the gateway's 4096-byte limit.
   */
  readonly send: (op: number, d: unknown) => Effect.Effect<void, PayloadTooLarge | ShardStopped>
  /** Commands waiting for a connection. */
  readonly size: Effect.Effect<number>
  /** The shard stopped for good: fails every waiting command, and every later one, with `error`. */
  readonly close: (error: ShardStopped) => Effect.Effect<void>
  /**
   * Run by a connection once it is ready: writes queued and future commands, each after
   * `acquire` (the limiter) allows it. Ends only by failing (the socket broke).
   */
  readonly drain: (
    acquire: Effect.Effect<void>,
    write: (payload: string) => Effect.Effect<void, TransportError>,
  ) => Effect.Effect<never, TransportError>
}

export const make: Effect.Effect<Outbox> = Effect.sync(() => {
  const queue: Array<Pending> = []
  // Wakes the draining connection; replaced each time it is completed.
  let wake = Deferred.makeUnsafe<void>()
  let closed: ShardStopped | undefined

  const send = (op: number, d: unknown) =>
    Effect.suspend((): Effect.Effect<void, PayloadTooLarge | ShardStopped> => {
      if (closed) return Effect.fail(closed)
      const payload = Protocol.command(op, d)
      const bytes = Protocol.utf8Length(payload)
      if (bytes > Protocol.maxPayloadBytes) {
        return Effect.fail(new PayloadTooLarge({ bytes, limit: Protocol.maxPayloadBytes }))
      }
      const pending: Pending = { payload, written: Deferred.makeUnsafe() }
      queue.push(pending)
      Deferred.doneUnsafe(wake, Effect.void)
      return Deferred.await(pending.written)
    })

  const drain = (
    acquire: Effect.Effect<void>,
    write: (payload: string) => Effect.Effect<void, TransportError>,
  ) =>
    Effect.gen(function* () {
      while (true) {
        const head = queue[0]
        if (head === undefined) {
          wake = Deferred.makeUnsafe()
          yield* Deferred.await(wake)
          continue
        }
        yield* acquire
        // Write and dequeue together: an interruption lands before or after, never between.
        yield* Effect.uninterruptible(
          Effect.tap(write(head.payload), () => {
            queue.shift()
            return Deferred.succeed(head.written, undefined)
          }),
        )
      }
    })

  const close = (error: ShardStopped) =>
    Effect.sync(() => {
      closed = error
      for (const pending of queue.splice(0)) Deferred.doneUnsafe(pending.written, Effect.fail(error))
    })

  return { send, size: Effect.sync(() => queue.length), close, drain }
})
