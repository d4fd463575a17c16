/**
 * The heartbeat of one connection. Its state is made fresh for each connection and its
 * loop runs as a fiber forked in the connection's scope, so when the connection ends the
 * loop is interrupted: a heartbeat can never fire against a dead socket, and no ACK state
 * crosses from one connection to the next. A missed ACK is a typed `ZombieDetected`.
 */
import { Clock, Effect, type Fiber, Random, type Scope } from "effect"
import { type TransportError, ZombieDetected } from "./GatewayError.ts"
import * as Protocol from "./Protocol.ts"

export interface HeartbeatOptions {
  /** From Hello's `heartbeat_interval`, in milliseconds. */
  readonly intervalMillis: number
  readonly shard: readonly [number, number]
  /** Writes one payload on this connection's socket. */
  readonly send: (payload: string) => Effect.Effect<void, TransportError>
  /** The last sequence number received, carried by every beat. */
  readonly sequence: Effect.Effect<number | null>
  /**
   * True while the connection's reader is held up by a slow consumer (back-pressure): ACKs
   * may be waiting unread, so a missing one proves nothing and the beat is sent anyway.
   */
  readonly readerStalled?: (() => boolean) | undefined
  /** Called with each measured round trip (beat → ACK), in milliseconds. */
  readonly onLatency?: ((millis: number) => Effect.Effect<void>) | undefined
}

export interface Heartbeat {
  /** Records a Heartbeat ACK (op 11). */
  readonly ack: Effect.Effect<void>
  /** Answers a server's heartbeat request (op 1) at once, without the zombie check. */
  readonly beatNow: Effect.Effect<void, TransportError>
  /** The last measured round trip in milliseconds, undefined before the first ACK. */
  readonly latency: Effect.Effect<number | undefined>
  /** The forked loop: it only ever ends by failing (zombie, or a failed write). */
  readonly fiber: Fiber.Fiber<never, ZombieDetected | TransportError>
}

/**
 * Starts the heartbeat in the current scope: first beat after `interval × jitter`
 * (jitter from `Random`, uniform in [0, 1)), then one every `interval`. A beat that finds
 * the previous one unanswered fails with `ZombieDetected` instead of sending.
 */
export const start = Effect.fnUntraced(function* (
  options: HeartbeatOptions,
): Effect.fn.Return<Heartbeat, never, Scope.Scope> {
  const { intervalMillis, shard, send, sequence } = options
  // Plain variables are enough: this state belongs to one connection and is only touched
  // by its fibers, which all run on the same event loop.
  let awaitingAck = false
  let lastSentAt = 0 // any beat, for latency
  let lastRegularAt = 0 // the scheduled beat the zombie check is about
  let lastAckAt: number | null = null
  let latency: number | undefined

  const beat = Effect.gen(function* () {
    const seq = yield* sequence
    lastSentAt = yield* Clock.currentTimeMillis
    yield* send(Protocol.heartbeat(seq))
  })

  const regularBeat = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    if (awaitingAck && !options.readerStalled?.()) {
      return yield* new ZombieDetected({
        shard,
        intervalMillis,
        lastAckAt,
        waitedMillis: now - lastRegularAt,
      })
    }
    awaitingAck = true
    lastRegularAt = now
    yield* beat
  })

  const loop: Effect.Effect<never, ZombieDetected | TransportError> = Effect.gen(function* () {
    const jitter = yield* Random.next
    yield* Effect.sleep(intervalMillis * jitter)
    while (true) {
      yield* regularBeat
      yield* Effect.sleep(intervalMillis)
    }
  })

  const fiber = yield* Effect.forkScoped(loop)

  const ack = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    awaitingAck = false
    lastAckAt = now
    latency = now - lastSentAt
    if (options.onLatency) yield* options.onLatency(latency)
  })

  return {
    ack,
    beatNow: beat,
    latency: Effect.sync(() => latency),
    fiber,
  }
})
