/**
 * One connection of a shard, as the span `vigil.connection` with its phases `vigil.connect`
 * (socket open to Hello) and `vigil.handshake` (Identify/Resume to READY/RESUMED): runs it,
 * keeps the shard's status, session and metrics up to date from what it observes, and
 * returns how it went, as the shard's reconnect decision needs it.
 */
import { Clock, Effect, Exit } from "effect"
import * as Connection from "../Connection.ts"
import type { ConnectionError, SessionStartLimitExhausted } from "../GatewayError.ts"
import type * as Metrics from "../Metrics.ts"
import * as ReconnectPolicy from "../ReconnectPolicy.ts"
import * as ServerText from "../ServerText.ts"
import type { StoredSession } from "../SessionStore.ts"
import type { GatewayTransport } from "../Transport.ts"
import type { Delivery } from "./Delivery.ts"
import * as Phase from "./Phase.ts"
import type { Session } from "./Session.ts"
import type { Status } from "./Status.ts"

/** What every connection of one shard shares. */
export interface Shard {
  /** Span attributes naming the shard. */
  readonly attributes: Record<string, unknown>
  /** Everything but what each attempt adds: its URL, handshake, presence and event handler. */
  readonly connection: Omit<
    Connection.ConnectionOptions<SessionStartLimitExhausted>,
    "url" | "handshake" | "presence" | "onEvent"
  >
  readonly session: Session
  readonly delivery: Delivery
  readonly status: Status
  readonly metrics: Metrics.ShardMetrics
  readonly policy: ReconnectPolicy.PolicyConfig
}

export interface Attempt {
  /** Counts the shard's attempts, from 1. */
  readonly number: number
  /** The session to resume; none: identify. */
  readonly resumed: StoredSession | undefined
  readonly url: string
  readonly presence: Connection.ConnectionOptions["presence"]
}

export interface Outcome {
  readonly exit: Exit.Exit<void, ConnectionError | SessionStartLimitExhausted>
  /** READY (of a new session) or RESUMED came. */
  readonly handshook: boolean
  /** A Resume the server saw (Hello came) and never answered with RESUMED. */
  readonly resumeFailed: boolean
  /** It proved healthy (`ReconnectPolicy.provedHealthy`): the backoff counts from zero again. */
  readonly healthy: boolean
  readonly startedAt: number
}

/** Runs on the shard's loop fiber, which has the transport from `Shard.make`'s context. */
export const run = (shard: Shard, attempt: Attempt): Effect.Effect<Outcome, never, GatewayTransport> =>
  Effect.gen(function* () {
    const { resumed, url } = attempt
    const startedAt = yield* Clock.currentTimeMillis
    const handshake: Connection.Handshake = resumed
      ? { _tag: "resume", sessionId: resumed.sessionId, seq: resumed.sequence }
      : { _tag: "identify" }
    const connect = yield* Phase.start("vigil.connect", shard.attributes)
    shard.metrics.connection()
    yield* shard.status.update((s) => ({
      ...s,
      state: { _tag: "Connecting" },
      connections: s.connections + 1,
    }))
    const { progress, onEvent } = observer(shard, resumed, handshake, connect)
    const exit = yield* Effect.exit(
      Connection.run({ ...shard.connection, presence: attempt.presence, url, handshake, onEvent }).pipe(
        // Shut down mid-phase: the open phase ends too, its span not left dangling.
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            connect.end(Exit.interrupt())
            progress.handshaking?.end(Exit.interrupt())
          }),
        ),
      ),
    )
    connect.end(exit)
    progress.handshaking?.end(exit)
    yield* Effect.annotateCurrentSpan(Phase.outcomeAttributes(exit))
    const endedAt = yield* Clock.currentTimeMillis
    yield* shard.session.save
    const { readyAt, ackedAfterReady, sentHandshake } = progress
    return {
      exit,
      handshook: readyAt !== undefined,
      resumeFailed: resumed !== undefined && sentHandshake && readyAt === undefined,
      healthy: ReconnectPolicy.provedHealthy({ readyAt, ackedAfterReady, endedAt }, shard.policy),
      startedAt,
    }
  }).pipe(
    Effect.withSpan("vigil.connection", {
      attributes: {
        ...shard.attributes,
        "vigil.attempt": attempt.number,
        "vigil.handshake": attempt.resumed ? "resume" : "identify",
        "vigil.session.id": attempt.resumed?.sessionId ?? "",
        "vigil.url": ServerText.sanitize(attempt.url),
      },
    }),
  )

/** How far one connection got. */
interface Progress {
  /** Hello came, so Identify/Resume went out right after. */
  sentHandshake: boolean
  handshaking: Phase.Phase | undefined
  readyAt: number | undefined
  ackedAfterReady: boolean
}

/** The connection's event handler, and the progress it records. */
const observer = (
  shard: Shard,
  resumed: StoredSession | undefined,
  handshake: Connection.Handshake,
  connect: Phase.Phase,
) => {
  const { delivery, metrics, session, status } = shard
  const progress: Progress = {
    sentHandshake: false,
    handshaking: undefined,
    readyAt: undefined,
    ackedAfterReady: false,
  }
  const handshakeComplete = Effect.map(Clock.currentTimeMillis, (now) => {
    progress.readyAt = now
    return now
  })
  const onEvent = (event: Connection.ConnectionEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "Dispatches":
        metrics.dispatched(event.dispatches)
        return delivery.deliver(event.dispatches)
      case "Hello":
        progress.sentHandshake = true
        connect.end()
        return Effect.flatMap(
          Phase.start("vigil.handshake", { ...shard.attributes, "vigil.handshake": handshake._tag }),
          (phase) => {
            progress.handshaking = phase
            return resumed ? status.setState({ _tag: "Resuming" }) : Effect.void
          },
        )
      case "Ready":
        // A resume's replay may include the session's own READY: an old event, which the
        // duplicate filter handles, not a new session.
        if (resumed?.sessionId === event.ready.session_id) return Effect.void
        return Effect.gen(function* () {
          const now = yield* handshakeComplete
          progress.handshaking?.end()
          metrics.identified()
          yield* session.begin(event.ready)
          yield* status.update((s) => ({
            ...s,
            state: { _tag: "Ready", since: now },
            sessionId: event.ready.session_id,
            identifies: s.identifies + 1,
          }))
        })
      case "Resumed":
        progress.handshaking?.end()
        metrics.resumed()
        return Effect.flatMap(handshakeComplete, (now) =>
          status.update((s) => ({ ...s, state: { _tag: "Ready", since: now }, resumes: s.resumes + 1 })),
        ).pipe(Effect.andThen(session.save)) // the replay is delivered: store where it ended
      case "Latency":
        return Effect.sync(() => {
          if (progress.readyAt !== undefined) progress.ackedAfterReady = true
          metrics.latency(event.millis)
          // Published when it changed: the same round trip again tells a subscriber nothing.
          if (status.ref.value.latency !== event.millis) {
            status.updateUnsafe((s) => ({ ...s, latency: event.millis }))
          }
        })
      case "Warning":
        metrics.warning(event.error)
        return Effect.void
    }
  }
  return { progress, onEvent }
}
