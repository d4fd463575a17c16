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
   * A connection that finished its handshake serves the queue through `writer` until
   * `detach`: whenever commands wait and no writer runs, the outbox calls `writer.start`
   * with an effect that writes them (each after `acquire`) and ends once the queue is
   * empty. Nothing waits while nothing is queued (an idle shard holds no writer fiber).
   */
  readonly attach: (writer: Writer) => Effect.Effect<void>
  readonly detach: (writer: Writer) => void
}

/** How a connection writes the outbox's commands. */
export interface Writer {
  /** Waits until the connection's send limiter admits a command. */
  readonly acquire: Effect.Effect<void>
  readonly write: (payload: string) => Effect.Effect<void, TransportError>
  /** Runs `writing` on a fiber of the connection (a failure ends the connection). */
  readonly start: (writing: Effect.Effect<void, TransportError>) => Effect.Effect<void>
}

export const make: Effect.Effect<Outbox> = Effect.sync(() => {
  const queue: Array<Pending> = []
  let closed: ShardStopped | undefined
  let attached: Writer | undefined
  let writing = false // a writer runs (started, not yet ended)

  /** Writes the queue, oldest first, until it is empty or the writer was detached. */
  const writeAll = (writer: Writer): Effect.Effect<void, TransportError> => {
    const next: Effect.Effect<void, TransportError> = Effect.suspend(() => {
      const head = queue[0]
      if (head === undefined || attached !== writer) {
        writing = false
        return Effect.void
      }
      // Write and dequeue together: an interruption lands before or after, never between.
      return Effect.andThen(
        writer.acquire,
        Effect.andThen(
          Effect.uninterruptible(
            Effect.tap(writer.write(head.payload), () => {
              queue.shift()
              return Deferred.succeed(head.written, undefined)
            }),
          ),
          next,
        ),
      )
    })
    return Effect.onExit(next, () =>
      Effect.sync(() => {
        writing = false
      }),
    )
  }
  const startIfWaiting = (): Effect.Effect<void> => {
    if (attached === undefined || writing || queue.length === 0) return Effect.void
    writing = true
    return attached.start(writeAll(attached))
  }

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
      return Effect.andThen(startIfWaiting(), Deferred.await(pending.written))
    })

  // A connection's writer ends with its scope, before the next connection attaches: a writer
  // that never ran (its scope closing as it was started) cannot leave `writing` set.
  const attach = (writer: Writer) =>
    Effect.suspend(() => {
      attached = writer
      writing = false
      return startIfWaiting()
    })
  const detach = (writer: Writer) => {
    if (attached !== writer) return
    attached = undefined
    writing = false
  }

  const close = (error: ShardStopped) =>
    Effect.sync(() => {
      closed = error
      for (const pending of queue.splice(0)) Deferred.doneUnsafe(pending.written, Effect.fail(error))
    })

  return { send, size: Effect.sync(() => queue.length), close, attach, detach }
})
