/**
 * One WebSocket's whole life in one scope: open, wait for Hello, Identify or Resume, read
 * frames and heartbeat, and end by failing with the typed reason. Everything the
 * connection owns (socket, reader, heartbeat, writer) is tied to that scope, so nothing of
 * it can outlive the connection. Deciding what to do next is the Shard's business.
 */
import { Clock, Deferred, Duration, Effect, Exit, Fiber, type Redacted, Schema, Scope } from "effect"
import { type Decompressor, defaultMaxMessageBytes, GatewayCompression } from "./Compression.ts"
import {
  type ConnectionError,
  DecodeError,
  fatalFromClose,
  HandshakeTimeout,
  HelloTimeout,
  InvalidSession,
  ReconnectRequested,
  ServerClosed,
  ServerMisbehaviour,
  TransportError,
} from "./GatewayError.ts"
import * as Heartbeat from "./Heartbeat.ts"
import type * as Intents from "./Intents.ts"
import type * as Outbox from "./Outbox.ts"
import * as Protocol from "./Protocol.ts"
import * as SendLimiter from "./SendLimiter.ts"
import { type Frame, GatewayTransport, type TransportClosed } from "./Transport.ts"

export type Handshake =
  | { readonly _tag: "identify" }
  | { readonly _tag: "resume"; readonly sessionId: string; readonly seq: number | null }

export interface ConnectionOptions<E = never> {
  /** Gateway (or `resume_gateway_url`) base URL; `v`, `encoding` and `compress` are added. */
  readonly url: string
  readonly token: Redacted.Redacted<string>
  readonly intents: Intents.Intents
  readonly shard: readonly [id: number, count: number]
  readonly handshake: Handshake
  readonly compression?: Protocol.Compression | undefined
  /** How long to wait for Hello after the socket opens. Default 20 s. */
  readonly helloTimeout?: Duration.Input | undefined
  /** How long to wait for READY / RESUMED after Identify / Resume. Default 30 s. */
  readonly handshakeTimeout?: Duration.Input | undefined
  /** Largest accepted (decompressed) message. Default 32 MiB. */
  readonly maxMessageBytes?: number | undefined
  readonly properties?: Protocol.IdentifyProperties | undefined
  readonly largeThreshold?: number | undefined
  readonly presence?: Protocol.IdentifyOptions["presence"]
  /** Waits for this shard's turn under the identify rate limit; runs right before Identify. */
  readonly beforeIdentify?: Effect.Effect<void, E> | undefined
  /**
   * The session's last sequence, carried by heartbeats; its owner (the Shard) keeps it up
   * to date. When absent, the connection keeps its own: the Resume's `seq`, then the last
   * dispatch it delivered.
   */
  readonly sequence?: Effect.Effect<number | null> | undefined
  /** Everything the connection observes, in order. Runs on the reader fiber. */
  readonly onEvent?: ((event: ConnectionEvent) => Effect.Effect<void>) | undefined
  /** Commands to send after READY/RESUMED, through this connection's rate limiter. */
  readonly outbox?: Outbox.Outbox | undefined
  /** Told of the rate limiter's waits and refusals (the shard's metrics). */
  readonly sendRecorder?: SendLimiter.SendRecorder | undefined
  /**
   * Completes when the caller wants this connection to end: `"logout"` closes with 1000
   * (the session ends), `"disconnect"` with a resumable code, `"retire"` logs out after
   * reading to the server's close frame (see `StopMode`). `run` then succeeds.
   */
  readonly stop?: Effect.Effect<StopMode> | StopSignal | undefined
}

/**
 * `"retire"`: a logout that loses nothing the server sent. The close frame (1000) goes out,
 * heartbeats and commands stop (a write after it would tear the socket down), and the
 * reader goes on delivering until the socket ends: the server's close frame, which follows
 * every event it sent before it saw ours, or the transport's bound on the close handshake
 * (1 s on Node); at most `retireGrace` after the close. A reshard retires its old shards so.
 */
export type StopMode = "logout" | "disconnect" | "retire"

/**
 * `stop` as a plain signal: the connection reacts to it in the requester's call, so no
 * fiber of the connection sits waiting for it (a Shard's idle connection holds one less).
 * Like the effect, it takes effect once the handshake is done.
 */
export interface StopSignal {
  readonly _tag: "StopSignal"
  /** Asks for a stop; the first request counts. */
  readonly request: (mode: StopMode) => void
  readonly requested: () => StopMode | undefined
  /** The running connection's reaction; returns its removal. */
  readonly listen: (onStop: (mode: StopMode) => void) => () => void
}

const isStopSignal = (stop: Effect.Effect<StopMode> | StopSignal): stop is StopSignal =>
  (stop as { readonly _tag?: unknown })._tag === "StopSignal"

export const makeStopSignal = (): StopSignal => {
  let mode: StopMode | undefined
  let listener: ((mode: StopMode) => void) | undefined
  return {
    _tag: "StopSignal",
    request: (asked) => {
      if (mode !== undefined) return
      mode = asked
      listener?.(asked)
    },
    requested: () => mode,
    listen: (onStop) => {
      listener = onStop
      return () => {
        if (listener === onStop) listener = undefined
      }
    },
  }
}

export type ConnectionEvent =
  | { readonly _tag: "Hello"; readonly intervalMillis: number }
  | { readonly _tag: "Ready"; readonly ready: Protocol.Ready }
  | { readonly _tag: "Resumed" }
  /** Dispatches in arrival order, batched per read (the hot path: one call per batch). */
  | { readonly _tag: "Dispatches"; readonly dispatches: ReadonlyArray<Protocol.Dispatch> }
  /** A heartbeat's round trip, and the last few (`Heartbeat.latencySamples`), oldest first. */
  | { readonly _tag: "Latency"; readonly millis: number; readonly recentMillis: ReadonlyArray<number> }
  /**
   * Something odd the connection survived: reported, not fatal. A `DecodeError` for an
   * unknown opcode; a `ServerMisbehaviour` for a heartbeat request flood or a too-short
   * interval (each reported once per connection).
   */
  | { readonly _tag: "Warning"; readonly error: DecodeError | ServerMisbehaviour }

const defaultHelloTimeout = Duration.seconds(20)
const defaultHandshakeTimeout = Duration.seconds(30)
/** How long a failed write waits for the reader to learn why the socket closed. */
const closeGrace = Duration.seconds(1)
/** How long a retiring connection reads on after its close, at most. */
const retireGrace = Duration.seconds(5)

const noEvent = () => Effect.void

/**
 * Runs one connection to its end. Fails with the reason it ended; succeeds only when
 * `stop` asked it to. Interrupting it closes the socket with a resumable code.
 */
export const run = <E = never>(
  options: ConnectionOptions<E>,
): Effect.Effect<void, ConnectionError | E, GatewayTransport> =>
  Effect.scoped(
    Effect.gen(function* () {
      const transport = yield* GatewayTransport
      const compression = options.compression ?? "none"
      const maxMessageBytes = options.maxMessageBytes ?? defaultMaxMessageBytes
      const onEvent = options.onEvent ?? noEvent

      const codecs = yield* GatewayCompression
      const decompressor =
        compression === "none" ? undefined : yield* codecs.make(compression, { maxMessageBytes })

      if (!Protocol.isUrl(options.url)) {
        return yield* new TransportError({ stage: "open", detail: "the gateway URL is malformed" })
      }
      const socket = yield* transport.connect(Protocol.gatewayUrl(options.url, compression))
      // Runs before the transport's own release: a resumable code unless logging out, and
      // the transport tears the socket down without waiting for the peer's answer.
      let closeCode: number = Protocol.ResumableCloseCode
      // A retire sent its close frame already (a transport's close may do more than send it:
      // the cluster's waits for the app there); the transport's release tears the socket down.
      let closeSent = false
      const scope = yield* Effect.scope
      yield* Scope.addFinalizer(
        scope,
        Effect.suspend(() => (closeSent ? Effect.void : socket.close(closeCode))),
      )

      // The session's sequence is the caller's; a connection run alone keeps its own here.
      const own = options.sequence
        ? undefined
        : { seq: options.handshake._tag === "resume" ? options.handshake.seq : null }
      const sequence = options.sequence ?? Effect.sync(() => own!.seq)

      const hello = yield* Deferred.make<number>()
      const handshakeDone = yield* Deferred.make<void>()
      let limiter: SendLimiter.SendLimiter | undefined // from Hello on
      let stalled = false // the reader waits on the consumer
      let progressAt = 0 // clock millis of the handshake's last progress (a dispatch)
      let handshakeComplete = false
      /** Set by a retire: completed when the reader reached the socket's end. */
      let retiring: Deferred.Deferred<void> | undefined
      /** The outbox's writer leaves before a retire's close frame (set once READY). */
      let detachOutbox: (() => void) | undefined
      /** Writers to stop before a retire's close frame: the heartbeat, an outbox writer. */
      const writers = new Set<Fiber.Fiber<unknown, unknown>>()
      const writing = (fiber: Fiber.Fiber<unknown, unknown>) => {
        writers.add(fiber)
        fiber.addObserver(() => writers.delete(fiber))
      }

      const warn = (error: DecodeError | ServerMisbehaviour) =>
        Effect.logWarning("gateway: the server sent something unexpected", error.message).pipe(
          Effect.andThen(onEvent({ _tag: "Warning", error })),
        )

      const clock = yield* Clock.Clock
      /**
       * Writes a send the limiter admitted, and dates it once written (or failed). Not
       * `ensuring`: an interrupted write ends the connection, and its limiter with it.
       */
      const write = (admitted: SendLimiter.SendLimiter, payload: string) =>
        Effect.flatMap(Effect.exit(socket.send(payload)), (exit) => {
          admitted.writtenAt(clock.currentTimeMillisUnsafe())
          return exit
        })
      // Heartbeats and the handshake never wait; the limiter keeps room for them.
      const send = (payload: string): Effect.Effect<void, TransportError> => {
        const admitted = limiter
        if (!admitted) return socket.send(payload)
        return Effect.suspend(() => {
          admitted.recordAt(clock.currentTimeMillisUnsafe())
          return write(admitted, payload)
        })
      }

      const socketSendUnsafe = socket.sendUnsafe
      const heartbeat = yield* Heartbeat.make({
        shard: options.shard,
        send,
        // `send`, in plain calls: recorded, written and dated by the limiter (when there is one).
        sendUnsafe:
          socketSendUnsafe &&
          ((payload) => {
            const admitted = limiter
            if (admitted === undefined) return socketSendUnsafe(payload)
            admitted.recordAt(clock.currentTimeMillisUnsafe())
            const error = socketSendUnsafe(payload)
            admitted.writtenAt(clock.currentTimeMillisUnsafe())
            return error
          }),
        // A requested beat is optional: it never takes the last places of the budget.
        sendRequested: (payload) => {
          const admitted = limiter
          if (!admitted) return Effect.as(socket.send(payload), true)
          return Effect.flatMap(admitted.tryAcquire, (ok) =>
            ok ? Effect.as(write(admitted, payload), true) : Effect.succeed(false),
          )
        },
        sequence,
        readerStalled: () => stalled,
        onLatency: (millis, recentMillis) => onEvent({ _tag: "Latency", millis, recentMillis }),
        onWarning: warn,
      })

      const handle = (envelope: Protocol.Envelope, bytes: number): Effect.Effect<void, ConnectionError> => {
        // Retiring: only the dispatches still matter (no answer to a heartbeat request, no op 7).
        if (retiring !== undefined && envelope.op !== Protocol.Op.Dispatch) return Effect.void
        switch (envelope.op) {
          case Protocol.Op.Dispatch:
            return handshakeDispatch(envelope as Protocol.Envelope & { s: number; t: string }, bytes)
          case Protocol.Op.HeartbeatAck:
            return heartbeat.ack
          case Protocol.Op.Heartbeat:
            // A server request: beat now, no zombie check. A write failing here means the
            // socket is closing; the next receive says why, which is the outcome to report.
            return Effect.catchTag(heartbeat.requested, "TransportError", () => Effect.void)
          case Protocol.Op.Hello:
            return Schema.decodeUnknownEffect(Protocol.Hello)(envelope.d).pipe(
              Effect.mapError(() => payloadError("Hello without a valid heartbeat_interval", bytes)),
              Effect.flatMap((d) => Deferred.succeed(hello, d.heartbeat_interval)),
              Effect.asVoid,
            )
          case Protocol.Op.Reconnect:
            return Effect.fail(new ReconnectRequested())
          case Protocol.Op.InvalidSession:
            return Effect.fail(new InvalidSession({ resumable: envelope.d === true }))
          default:
            return warn(
              new DecodeError({ stage: "envelope", detail: `unknown opcode ${envelope.op}`, bytes }),
            )
        }
      }

      // The consumer may hold the reader here (back-pressure); while it does, unread ACKs
      // and frames are not the server's fault. Dispatches before READY/RESUMED (a replay)
      // are the handshake's progress.
      const deliver = (dispatches: ReadonlyArray<Protocol.Dispatch>) =>
        Effect.gen(function* () {
          if (!handshakeComplete) progressAt = yield* Clock.currentTimeMillis
          stalled = true
          yield* onEvent({ _tag: "Dispatches", dispatches })
          stalled = false
          if (own) {
            const last = dispatches[dispatches.length - 1]!.seq
            if (own.seq === null || last > own.seq) own.seq = last
          }
        })

      /** READY and RESUMED: the handshake's end, announced before the dispatch itself. */
      const handshakeDispatch = (envelope: Protocol.Envelope & { s: number; t: string }, bytes: number) =>
        Effect.gen(function* () {
          if (envelope.t === "READY") {
            const ready = yield* Schema.decodeUnknownEffect(Protocol.Ready)(envelope.d).pipe(
              Effect.mapError(() => payloadError("READY without a valid session", bytes)),
            )
            // A resume's replay may carry the session's own READY: an old event to pass on,
            // not the handshake's end (commands must wait for RESUMED).
            const handshake = options.handshake
            if (
              !handshakeComplete &&
              handshake._tag === "resume" &&
              ready.session_id === handshake.sessionId
            ) {
              return yield* deliver([Protocol.makeDispatch(envelope.s, envelope.t, envelope.d)])
            }
            yield* onEvent({ _tag: "Ready", ready })
          } else {
            yield* onEvent({ _tag: "Resumed" })
          }
          yield* deliver([Protocol.makeDispatch(envelope.s, envelope.t, envelope.d)])
          handshakeComplete = true
          yield* Deferred.succeed(handshakeDone, undefined)
        })

      const decode = makeDecoder(maxMessageBytes)
      // Ordinary dispatches are gathered and handed over once per batch; anything else
      // (ACK, op 7, READY, …) first flushes what came before it, so order holds. Plain
      // recursion over the read, not a generator: a waiting reader holds no generator frame.
      const process = (
        messages: ReadonlyArray<Frame>,
        from: number,
        batch: Array<Protocol.Dispatch>,
      ): Effect.Effect<void, ConnectionError> => {
        for (let i = from; i < messages.length; i++) {
          const message = messages[i]!
          const decoded = decode(message)
          if (decoded instanceof DecodeError) {
            return batch.length > 0
              ? Effect.andThen(deliver(batch), Effect.fail(decoded))
              : Effect.fail(decoded)
          }
          if (decoded.op === Protocol.Op.Dispatch && decoded.t !== "READY" && decoded.t !== "RESUMED") {
            batch.push(Protocol.makeDispatch(decoded.s!, decoded.t!, decoded.d))
            continue
          }
          // The read's last frame (a heartbeat ACK usually comes alone) needs nothing after it.
          const rest =
            i === messages.length - 1 && batch.length === 0
              ? handle(decoded, byteLength(message))
              : Effect.suspend(() =>
                  Effect.andThen(handle(decoded, byteLength(message)), process(messages, i + 1, [])),
                )
          return batch.length > 0 ? Effect.andThen(deliver(batch), rest) : rest
        }
        return batch.length > 0 ? deliver(batch) : Effect.void
      }
      // The socket's close becomes its error once, around the whole loop, not per read.
      const reader: Effect.Effect<never, ConnectionError> = Effect.forever(
        Effect.flatMap(socket.receive, (frames) =>
          decompressor
            ? Effect.flatMap(decompressAll(decompressor, frames), (messages) => process(messages, 0, []))
            : process(frames, 0, []),
        ),
        { disableYield: true },
      ).pipe(
        Effect.catchTag("TransportClosed", (closed) => Effect.fail(closedToError(closed, options.token))),
      )

      // The handshake times out when it stalls: no progress for the whole timeout while the
      // reader is free. A long replay before RESUMED, or a slow consumer, is progress; ACKs
      // and other frames are not (a server may ACK forever and never answer Identify).
      const handshakeTimeout = Duration.toMillis(options.handshakeTimeout ?? defaultHandshakeTimeout)
      const awaitHandshake = (kind: Handshake["_tag"]): Effect.Effect<void, HandshakeTimeout> =>
        Effect.gen(function* () {
          progressAt = Math.max(progressAt, yield* Clock.currentTimeMillis)
          while (true) {
            const now = yield* Clock.currentTimeMillis
            const remaining = progressAt + handshakeTimeout - now
            if (remaining <= 0 && !stalled) {
              return yield* new HandshakeTimeout({ handshake: kind, timeoutMillis: handshakeTimeout })
            }
            // Held up by the consumer: look again one timeout later.
            const wait = remaining > 0 ? remaining : handshakeTimeout
            const done = yield* Deferred.await(handshakeDone).pipe(Effect.timeoutOption(wait))
            if (done._tag === "Some") return
          }
        })

      /** Identify or Resume, then READY/RESUMED, then the writer, then waits for `stop`. */
      const session = (
        admitted: SendLimiter.SendLimiter,
      ): Effect.Effect<void, ConnectionError | E, Scope.Scope> =>
        Effect.gen(function* () {
          const handshake = options.handshake
          if (handshake._tag === "identify") {
            if (options.beforeIdentify) yield* options.beforeIdentify
            yield* send(
              Protocol.identify({
                token: options.token,
                intents: options.intents,
                shard: options.shard,
                properties: options.properties,
                largeThreshold: options.largeThreshold,
                presence: options.presence,
              }),
            )
          } else {
            yield* send(
              Protocol.resume({ token: options.token, sessionId: handshake.sessionId, seq: handshake.seq }),
            )
          }
          yield* awaitHandshake(handshake._tag)

          if (options.outbox) {
            // Commands are written by a fiber started when they wait, which ends once they
            // are written: an idle connection holds none.
            const outbox = options.outbox
            const writer: Outbox.Writer = {
              acquire: admitted.acquire,
              write: (payload) => write(admitted, payload),
              // Started from the sender's fiber: on this connection's scope and context.
              start: (commands) =>
                Effect.forkIn(
                  Effect.provideContext(
                    Effect.catchCause(closeAware(commands), (cause) => Deferred.failCause(ended, cause)),
                    context,
                  ),
                  scope,
                ).pipe(Effect.map(writing)),
            }
            detachOutbox = () => outbox.detach(writer)
            yield* Scope.addFinalizer(scope, Effect.sync(detachOutbox))
            yield* outbox.attach(writer)
          }
          // `stop` is the only way the connection ends well: a logout or a disconnect asked
          // for. Otherwise this part is done, and the connection runs on (reader, heartbeat).
          const stop = options.stop
          if (stop === undefined) return Effect.void
          if (isStopSignal(stop)) {
            // The signal ends the connection from the requester's call: no fiber waits for it.
            const stopWith = (mode: StopMode) => {
              if (mode !== "disconnect") closeCode = 1000
              // A retire reads on after its close: a fiber of this scope, for as long as that.
              if (mode === "retire") Effect.runForkWith(context)(Effect.forkIn(retireThenEnd, scope))
              else Deferred.doneUnsafe(ended, Exit.void)
            }
            const asked = stop.requested()
            if (asked !== undefined) {
              stopWith(asked)
              return Effect.void
            }
            const unlisten = stop.listen(stopWith)
            yield* Scope.addFinalizer(scope, Effect.sync(unlisten))
            return Effect.void
          }
          // Returned, not run here: the waiting fiber keeps no generator frame.
          return Effect.flatMap(stop, (mode) => {
            if (mode !== "disconnect") closeCode = 1000
            return mode === "retire" ? retireThenEnd : Deferred.succeed(ended, undefined)
          })
        }).pipe(Effect.flatten)

      // The connection's parts run side by side, each a fiber of this scope, and the first
      // to end decides how the connection ends: a failure of any part, or `stop`. The rest
      // is interrupted when the scope closes. (One Deferred rather than nested races: an idle
      // READY connection holds two fibers, reader and heartbeat, besides the one running it;
      // a writer while commands wait, and one waiting for `stop` if it is an effect.)
      const ended = yield* Deferred.make<void, ConnectionError | E>()
      const context = yield* Effect.context<never>()

      /** See `StopMode`: the close frame, then the reader's last deliveries. */
      const retire = Effect.gen(function* () {
        const drained = yield* Deferred.make<void>()
        retiring = drained
        detachOutbox?.()
        yield* Fiber.interruptAll(writers)
        closeSent = true
        yield* socket.close(1000)
        yield* Deferred.await(drained).pipe(
          Effect.timeoutOrElse({ duration: retireGrace, orElse: () => Effect.void }),
        )
      })
      const retireThenEnd = Effect.andThen(retire, Deferred.succeed(ended, undefined))
      // A write that failed because the socket was already closing gives way to the close
      // code, which the reader reports within `closeGrace`.
      const closeAware = <A, E2, R>(effect: Effect.Effect<A, E2 | TransportError, R>) =>
        Effect.catchTag(effect, "TransportError", (error) =>
          Effect.andThen(Effect.sleep(closeGrace), Effect.fail(error)),
        )
      const part = (effect: Effect.Effect<never, ConnectionError | E>) =>
        Effect.forkScoped(Effect.catchCause(effect, (cause) => Deferred.failCause(ended, cause)))

      const lifecycle: Effect.Effect<void, ConnectionError | E, Scope.Scope> = Effect.gen(function* () {
        const requested = yield* Deferred.await(hello).pipe(
          Effect.timeoutOrElse({
            duration: options.helloTimeout ?? defaultHelloTimeout,
            orElse: () =>
              Effect.fail(
                new HelloTimeout({
                  timeoutMillis: Duration.toMillis(options.helloTimeout ?? defaultHelloTimeout),
                }),
              ),
          }),
        )
        const intervalMillis = Heartbeat.clampInterval(requested)
        yield* onEvent({ _tag: "Hello", intervalMillis })
        if (intervalMillis !== requested) {
          yield* warn(
            new ServerMisbehaviour({
              kind: "heartbeat-interval",
              detail: `heartbeat_interval ${requested} ms is below the ${intervalMillis} ms floor, which is used instead`,
            }),
          )
        }
        const admitted = SendLimiter.make({
          heartbeatIntervalMillis: intervalMillis,
          recorder: options.sendRecorder,
        })
        limiter = admitted
        // A missed ACK ends the connection from Hello on: during the identify wait and the
        // handshake too, not only once READY came.
        writing(yield* part(closeAware(heartbeat.run(intervalMillis))))
        return session(admitted)
      }).pipe(Effect.flatten)

      // Retiring, the socket's end is what the reader waits for, not a failure.
      yield* part(
        Effect.catch(reader, (error) =>
          retiring === undefined
            ? Effect.fail(error)
            : Effect.andThen(Deferred.succeed(retiring, undefined), Effect.never),
        ),
      )
      yield* Effect.forkScoped(
        Effect.catchCause(closeAware(lifecycle), (cause) => Deferred.failCause(ended, cause)),
      )
      return Deferred.await(ended)
    }).pipe(Effect.flatten),
  )

const payloadError = (detail: string, bytes: number) => new DecodeError({ stage: "payload", detail, bytes })

/** A close from the peer becomes the protocol's meaning of its code. */
const closedToError = (
  error: TransportClosed | TransportError,
  token: Redacted.Redacted<string>,
): ConnectionError => {
  if (error._tag === "TransportError") return error
  return (
    fatalFromClose(error.code, error.reason, token) ?? ServerClosed.fromCode(error.code, error.reason, token)
  )
}

const byteLength = (frame: Frame): number => (typeof frame === "string" ? frame.length : frame.byteLength)

const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * With transport compression every binary frame goes through the connection's codec, one
 * call per run of binary frames; a text frame (which a compressing server does not send,
 * but may) passes through in its place, so order holds.
 */
const decompressAll = (
  decompressor: Decompressor,
  frames: ReadonlyArray<Frame>,
): Effect.Effect<ReadonlyArray<Frame>, DecodeError> => {
  if (frames.every((f) => typeof f !== "string"))
    return decompressor.decompress(frames as ReadonlyArray<Uint8Array>)
  return Effect.gen(function* () {
    const out: Array<Frame> = []
    let run: Array<Uint8Array> = []
    for (const frame of frames) {
      if (typeof frame !== "string") {
        run.push(frame)
        continue
      }
      if (run.length > 0) out.push(...(yield* decompressor.decompress(run)))
      run = []
      out.push(frame)
    }
    if (run.length > 0) out.push(...(yield* decompressor.decompress(run)))
    return out
  })
}

/**
 * A message (text, or an uncompressed binary frame) → JSON → envelope; each failure typed.
 * On the hot path, so it returns plain values rather than wrapping each one.
 */
const makeDecoder =
  (maxMessageBytes: number) =>
  (frame: Frame): Protocol.Envelope | DecodeError => {
    let text: string
    if (typeof frame === "string") {
      text = frame
    } else {
      if (frame.byteLength > maxMessageBytes) return tooLarge(frame.byteLength, maxMessageBytes)
      try {
        text = textDecoder.decode(frame)
      } catch {
        return new DecodeError({
          stage: "json",
          detail: "binary frame is not UTF-8",
          bytes: frame.byteLength,
        })
      }
    }
    // Text is measured in UTF-16 units (a lower bound of its bytes): no encoding pass on
    // the hot path; the transport's frame limit and the codec's output limit bound the rest.
    if (text.length > maxMessageBytes) return tooLarge(text.length, maxMessageBytes)
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      // The parser's own message quotes the input, which is not ours to repeat.
      return new DecodeError({ stage: "json", detail: "malformed JSON", bytes: text.length })
    }
    const envelope = Protocol.readEnvelope(parsed)
    return typeof envelope === "string"
      ? new DecodeError({ stage: "envelope", detail: envelope, bytes: text.length })
      : envelope
  }

const tooLarge = (bytes: number, limit: number) =>
  new DecodeError({ stage: "size", detail: `message exceeds the ${limit}-byte limit`, bytes })
