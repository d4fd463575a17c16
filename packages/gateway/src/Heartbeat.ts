/**
 * The heartbeat of one connection. Its state is made fresh for each connection and its
 * loop runs as a fiber forked in the connection's scope, so when the connection ends the
 * loop is interrupted: a heartbeat can never fire against a dead socket, and no ACK state
 * crosses from one connection to the next. A missed ACK is a typed `ZombieDetected`.
 *
 * A hostile server cannot make it beat fast: the interval is at least
 * `minimumIntervalMillis`, and its requests (op 1) are answered at most once per
 * `requestWindowMillis`.
 */
import { Clock, Duration, Effect, Random } from "effect"
import { ServerMisbehaviour, type TransportError, ZombieDetected } from "./GatewayError.ts"
import * as Protocol from "./Protocol.ts"

/**
 * The shortest interval honoured. Discord asks for ~41 s; a server asking for less than a
 * second is misbehaving, and beating faster would only burn the send budget.
 */
export const minimumIntervalMillis = 1_000

/** Server requests (op 1) within this long of the last answered one are not answered. */
export const requestWindowMillis = 1_000

/** How many recent round trips are kept. */
export const latencySamples = 5

export interface HeartbeatOptions {
  readonly shard: readonly [number, number]
  /** Writes a scheduled beat on this connection's socket. */
  readonly send: (payload: string) => Effect.Effect<void, TransportError>
  /** `send` as a plain call, when the socket has one: a beat is then one step. */
  readonly sendUnsafe?: ((payload: string) => TransportError | undefined) | undefined
  /**
   * Writes a beat the server asked for, if the connection's send budget has room right
   * now: false when it was not sent.
   */
  readonly sendRequested?: ((payload: string) => Effect.Effect<boolean, TransportError>) | undefined
  /** The last sequence number received, carried by every beat. */
  readonly sequence: Effect.Effect<number | null>
  /**
   * True while the connection's reader is held up by a slow consumer (back-pressure): ACKs
   * may be waiting unread, so a missing one proves nothing and the beat is sent anyway.
   */
  readonly readerStalled?: (() => boolean) | undefined
  /** Called with each measured round trip (beat → ACK), and the recent ones, oldest first. */
  readonly onLatency?: ((millis: number, recent: ReadonlyArray<number>) => Effect.Effect<void>) | undefined
  /** Called when the server misbehaves in a way the heartbeat survives. */
  readonly onWarning?: ((warning: ServerMisbehaviour) => Effect.Effect<void>) | undefined
}

export interface Heartbeat {
  /** Records a Heartbeat ACK (op 11). One with no beat outstanding is ignored. */
  readonly ack: Effect.Effect<void>
  /** Answers a server's heartbeat request (op 1) at once, without the zombie check. */
  readonly requested: Effect.Effect<void, TransportError>
  /**
   * The loop, which the connection forks in its scope after Hello: first beat after
   * `interval × jitter` (jitter from `Random`, uniform in [0, 1)), then one every
   * `interval`. A beat that finds an earlier one unanswered fails with `ZombieDetected`.
   */
  readonly run: (intervalMillis: number) => Effect.Effect<never, ZombieDetected | TransportError>
  /** The last measured round trips in milliseconds, oldest first; empty before the first ACK. */
  readonly latencies: Effect.Effect<ReadonlyArray<number>>
}

/** The interval to use for a Hello's `heartbeat_interval`. */
export const clampInterval = (intervalMillis: number): number =>
  Math.max(minimumIntervalMillis, intervalMillis)

/**
 * Makes a connection's heartbeat state, before Hello: requests may come first. ACKs are
 * counted, not flagged, and the server answers beats in order: each beat needs its own ACK,
 * so the ACK of a requested beat cannot stand in for a missing one of a scheduled beat.
 */
export const make = (options: HeartbeatOptions): Effect.Effect<Heartbeat> =>
  Clock.clockWith((clock) =>
    Effect.sync(() => {
      const { shard, sequence } = options
      // Plain variables are enough: this state belongs to one connection and is only touched
      // by its fibers, which all run on the same event loop. The clock is read directly: a
      // beat and an ACK are each one synchronous step (they run on every beat of every shard).
      let sentCount = 0
      let ackCount = 0
      let dueBy = 0 // ACKs needed by the next scheduled beat: every beat up to the last one
      let lastScheduledAt = 0
      let lastAckAt: number | null = null
      let lastRequestAt = Number.NEGATIVE_INFINITY
      let warnedFlood = false
      // Send times of beats awaiting their ACK, oldest first, for latency only. Bounded: while
      // the reader is stalled beats go on without the zombie check.
      const unanswered: Array<number> = []
      const recent: Array<number> = []

      /** Counted before the write returns: its ACK may be read before this fiber runs on. */
      const counted = (now: number) => {
        sentCount++
        unanswered.push(now)
        if (unanswered.length > 64) unanswered.shift()
      }
      const uncounted = () => {
        sentCount--
        unanswered.pop()
      }

      const scheduledBeat = (intervalMillis: number): Effect.Effect<void, ZombieDetected | TransportError> =>
        Effect.flatMap(sequence, (seq): Effect.Effect<void, ZombieDetected | TransportError> => {
          const now = clock.currentTimeMillisUnsafe()
          if (ackCount < dueBy && !options.readerStalled?.()) {
            return Effect.fail(
              new ZombieDetected({ shard, intervalMillis, lastAckAt, waitedMillis: now - lastScheduledAt }),
            )
          }
          lastScheduledAt = now
          counted(now)
          dueBy = sentCount
          if (options.sendUnsafe === undefined) return options.send(Protocol.heartbeat(seq))
          const error = options.sendUnsafe(Protocol.heartbeat(seq))
          return error === undefined ? Effect.void : Effect.fail(error)
        })

      const run = (intervalMillis: number): Effect.Effect<never, ZombieDetected | TransportError> =>
        Effect.gen(function* () {
          const jitter = yield* Random.next
          yield* clock.sleep(Duration.millis(intervalMillis * jitter))
          const beat = scheduledBeat(intervalMillis)
          const wait = clock.sleep(Duration.millis(intervalMillis))
          while (true) {
            yield* beat
            yield* wait
          }
        })

      const requestedBeat = Effect.flatMap(sequence, (seq) => {
        const now = clock.currentTimeMillisUnsafe()
        counted(now)
        const payload = Protocol.heartbeat(seq)
        const write = options.sendRequested ?? ((p: string) => Effect.as(options.send(p), true))
        return Effect.map(write(payload), (sent) => {
          if (!sent) uncounted()
          return sent
        })
      })

      const requested = Effect.gen(function* () {
        const now = clock.currentTimeMillisUnsafe()
        const sent = now - lastRequestAt >= requestWindowMillis && (yield* requestedBeat)
        if (sent) {
          lastRequestAt = now
          return
        }
        if (warnedFlood || !options.onWarning) return
        warnedFlood = true
        yield* options.onWarning(
          new ServerMisbehaviour({
            kind: "heartbeat-requests",
            detail: `heartbeat requests (op 1) faster than one per ${requestWindowMillis} ms or over the send budget; the extra ones go unanswered`,
          }),
        )
      })

      const ack = Effect.suspend(() => {
        if (ackCount >= sentCount) return Effect.void // nothing outstanding: not a round trip
        const now = clock.currentTimeMillisUnsafe()
        ackCount++
        lastAckAt = now
        const sentAt = unanswered.shift()
        if (sentAt === undefined) return Effect.void
        recent.push(now - sentAt)
        if (recent.length > latencySamples) recent.shift()
        return options.onLatency ? options.onLatency(now - sentAt, recent.slice()) : Effect.void
      })

      return { ack, requested, run, latencies: Effect.sync(() => recent.slice()) }
    }),
  )
