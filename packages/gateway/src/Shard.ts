/**
 * A Shard keeps one Discord session alive across any number of connections. Its loop
 * runs one scoped `Connection` at a time; when it ends, `ReconnectPolicy.decide` says
 * what comes next (resume, identify, stop) and the loop carries it out. Events leave
 * through a bounded queue that outlives connections, deduplicated by sequence so a resume
 * neither loses nor repeats a dispatch.
 *
 * Here: the wiring and the loop. One connection attempt (its span, phases and what it
 * observes) is `internal/Attempt.ts`; the status and health, `internal/Status.ts`; the event
 * buffer, `internal/Delivery.ts`; the session, `internal/Session.ts`.
 */
import type { GatewayPresenceUpdateData, GatewayVoiceStateUpdateData } from "discord-api-types/v10"
import {
  type Cause,
  Clock,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Fiber,
  Option,
  Random,
  type Redacted,
  Scope,
  type Stream,
  type SubscriptionRef,
} from "effect"
import * as Connection from "./Connection.ts"
import {
  type FatalGatewayError,
  type PayloadTooLarge,
  type SessionStartLimitExhausted,
  ShardStopped,
} from "./GatewayError.ts"
import { IdentifyThrottle } from "./IdentifyThrottle.ts"
import type * as Intents from "./Intents.ts"
import * as Attempt from "./internal/Attempt.ts"
import * as BoundedStore from "./internal/BoundedStore.ts"
import * as Delivery from "./internal/Delivery.ts"
import * as Session from "./internal/Session.ts"
import * as Status from "./internal/Status.ts"
import * as Members from "./Members.ts"
import * as Metrics from "./Metrics.ts"
import * as Outbox from "./Outbox.ts"
import * as Protocol from "./Protocol.ts"
import * as ReconnectPolicy from "./ReconnectPolicy.ts"
import * as ServerText from "./ServerText.ts"
import { type SaveOptions, SessionStore } from "./SessionStore.ts"
import * as Soundboard from "./Soundboard.ts"
import type { GatewayTransport } from "./Transport.ts"

export interface ShardConfig {
  readonly token: Redacted.Redacted<string>
  /** A bitfield or a list of `Intents.GatewayIntentBits`. */
  readonly intents: Intents.Intents
  readonly shard: readonly [id: number, count: number]
  /** From `GET /gateway/bot`. Default `wss://gateway.discord.gg`. */
  readonly gatewayUrl?: string | undefined
  readonly compression?: Protocol.Compression | undefined
  readonly properties?: Protocol.IdentifyProperties | undefined
  readonly largeThreshold?: number | undefined
  /** The presence Identify sets (status, activities, afk, since); `updatePresence` replaces it. */
  readonly presence?: GatewayPresenceUpdateData | undefined
  readonly helloTimeout?: Duration.Input | undefined
  readonly handshakeTimeout?: Duration.Input | undefined
  readonly maxMessageBytes?: number | undefined
  readonly policy?: Partial<ReconnectPolicy.PolicyConfig> | undefined
  /** Bound on each session store call; past it the shard carries on without. Default 5 s. */
  readonly storeTimeout?: Duration.Input | undefined
  /**
   * How far the stored sequence may lag the delivered one (a persistent store writes once
   * per `events` events or `interval`, whichever comes first; default 1000 events or 1 s).
   * After a crash, a restarted process resumes from the stored sequence and the server
   * replays at most that window again.
   */
  readonly sessionSave?: SaveOptions | undefined
  /**
   * The event buffer between the connection and the consumer. `backpressure` (default):
   * when full, reading stops until the consumer catches up; nothing is lost, and the
   * session's sequence only counts what was handed over, so if the consumer stalls past a
   * heartbeat interval the connection is judged a zombie and resumed from there.
   * `dropping` / `sliding`: never stall the socket; drop the newest / oldest event instead
   * (counted in `health.dropped`).
   */
  readonly events?: {
    readonly capacity?: number
    readonly strategy?: Delivery.Strategy
  }
  /**
   * Told of every change of the shard's status, at once and in order, as it is made: what a
   * health view needs without a fiber per shard on `status` changes. Must return quickly.
   */
  readonly onStatus?: ((next: ShardStatus, previous: ShardStatus) => void) | undefined
}

export type ShardState =
  /** Opening the socket, waiting for Hello. */
  | { readonly _tag: "Connecting" }
  /** Hello came; waiting for this shard's turn under the identify rate limit. */
  | { readonly _tag: "WaitingForIdentify" }
  /** Identify sent; waiting for READY. */
  | { readonly _tag: "Identifying" }
  /** Resume sent; waiting for the replay and RESUMED. */
  | { readonly _tag: "Resuming" }
  | { readonly _tag: "Ready"; readonly since: number }
  | { readonly _tag: "BackingOff"; readonly until: number; readonly reason: string }
  | {
      readonly _tag: "Stopped"
      readonly reason: string
      readonly error?: FatalGatewayError | SessionStartLimitExhausted
    }

export interface ShardStatus {
  readonly shard: readonly [number, number]
  readonly state: ShardState
  /** Last heartbeat round trip, milliseconds. */
  readonly latency: number | undefined
  readonly sessionId: string | undefined
  readonly connections: number
  readonly identifies: number
  readonly resumes: number
  /** How the last connection ended, and the gateway URL it had tried (server text sanitized). */
  readonly lastError:
    | { readonly tag: string; readonly message: string; readonly url?: string | undefined }
    | undefined
}

export interface ShardHealth extends ShardStatus, Delivery.DeliveryStats {
  readonly queuedCommands: number
}

export interface Shard {
  readonly id: number
  readonly count: number
  /**
   * Every dispatch, exactly once and in order, across reconnects. One consumer. Empty for a
   * shard of a ShardManager: its events are in the manager's `events`.
   */
  readonly events: Stream.Stream<Protocol.Dispatch>
  readonly status: SubscriptionRef.SubscriptionRef<ShardStatus>
  readonly health: Effect.Effect<ShardHealth>
  /**
   * Sends a command (op, d). Waits while disconnected and flushes after READY/RESUMED,
   * through the connection's send limiter; refused at once if over 4096 bytes. Fails with
   * `ShardStopped` once the shard has stopped for good.
   */
  readonly send: (op: number, d: unknown) => Effect.Effect<void, PayloadTooLarge | ShardStopped>
  /**
   * Presence Update (op 3): status, activities, afk, since. Sent like any command, and kept:
   * a later new session identifies with it.
   */
  readonly updatePresence: (
    presence: GatewayPresenceUpdateData,
  ) => Effect.Effect<void, PayloadTooLarge | ShardStopped>
  /** Voice State Update (op 4): join, move or leave (`channel_id: null`) a guild's voice channel. */
  readonly updateVoiceState: (
    state: GatewayVoiceStateUpdateData,
  ) => Effect.Effect<void, PayloadTooLarge | ShardStopped>
  /**
   * Request Soundboard Sounds (op 31): every asked guild's SOUNDBOARD_SOUNDS answer (they
   * also pass on `events`); a guild that stays silent fails it with a timeout.
   */
  readonly requestSoundboardSounds: (
    request: Soundboard.RequestSoundboardSounds,
  ) => Effect.Effect<
    Soundboard.SoundboardSoundsResult,
    Soundboard.SoundboardSoundsTimeout | PayloadTooLarge | ShardStopped
  >
  /**
   * Request Guild Members (op 8): every GUILD_MEMBERS_CHUNK for it, gathered by nonce. A
   * RATE_LIMITED answer fails it with `GuildMembersRateLimited`; silence, with a timeout.
   */
  readonly requestGuildMembers: (
    request: Members.RequestGuildMembers,
  ) => Effect.Effect<Members.GuildMembersResult, Members.GuildMembersError | PayloadTooLarge | ShardStopped>
  /** Ends the session: closes with 1000 (the bot shows offline) and stops the shard. */
  readonly logout: Effect.Effect<void>
  /**
   * A logout that first delivers every event the server sent before it saw the close (the
   * reader runs on to the server's close frame, bounded: `Connection.StopMode`). A reshard
   * retires its old shards so: what they still had unread reaches the handover.
   */
  readonly retire: Effect.Effect<void>
  /** Waits until the shard stops: succeeds after logout, fails with a fatal error. */
  readonly await: Effect.Effect<void, FatalGatewayError | SessionStartLimitExhausted>
}

const defaultGatewayUrl = "wss://gateway.discord.gg"

type Stop = FatalGatewayError | SessionStartLimitExhausted

/**
 * A buffer shared by several shards (a ShardManager's merged `events`): each accepted
 * dispatch is wrapped and offered there, with the buffer's own back-pressure.
 */
export type EventSink<A> = Delivery.Sink<A>

/**
 * Starts a shard in the current scope. Closing the scope closes its connection with a
 * resumable code (the session can be resumed, even by another process via the store).
 * With `into`, its events go to that shared buffer and its own `events` stream is empty.
 */
export const make = Effect.fnUntraced(function* (
  config: ShardConfig,
  into?: EventSink<any>,
): Effect.fn.Return<Shard, never, Scope.Scope | GatewayTransport | SessionStore | IdentifyThrottle> {
  const [id, count] = config.shard
  const throttle = yield* IdentifyThrottle
  const policy = { ...ReconnectPolicy.defaultConfig, ...config.policy }

  const session = yield* Session.make(
    BoundedStore.make(yield* SessionStore, config.shard, config.storeTimeout),
    config.sessionSave,
  )

  const members = Members.makeRegistry()
  const soundboard = Soundboard.makeRegistry()
  const delivery = yield* Delivery.make({
    capacity: config.events?.capacity ?? 1024,
    strategy: config.events?.strategy ?? "backpressure",
    session,
    observe: (dispatch) => {
      members.observe(dispatch)
      soundboard.observe(dispatch)
    },
    into,
  })
  const outbox = yield* Outbox.make
  const metrics = yield* Metrics.forShard(id, {
    sequence: session.sequence,
    queueDepth: () => delivery.stats().queued,
  })
  const status = yield* Status.make(config.shard, session.current()?.sessionId, metrics, config.onStatus)

  const stop = yield* Deferred.make<Connection.StopMode>()
  // What the running connection sees of `stop`, at once and without a fiber waiting for it.
  const stopSignal = Connection.makeStopSignal()
  const attributes = { "vigil.shard.id": id, "vigil.shard.count": count }
  // The last presence set: a new session (Identify) starts with it, as the old one ended.
  let presence = config.presence

  const shard: Attempt.Shard = {
    attributes,
    connection: {
      token: config.token,
      intents: config.intents,
      shard: config.shard,
      compression: config.compression,
      helloTimeout: config.helloTimeout,
      handshakeTimeout: config.handshakeTimeout,
      maxMessageBytes: config.maxMessageBytes,
      properties: config.properties,
      largeThreshold: config.largeThreshold,
      // Built when a connection identifies, not held for the shard's life.
      beforeIdentify: Effect.suspend(() =>
        status
          .setState({ _tag: "WaitingForIdentify" })
          .pipe(
            Effect.andThen(throttle.wait(id).pipe(Effect.withSpan("vigil.identify.wait", { attributes }))),
            Effect.andThen(status.setState({ _tag: "Identifying" })),
          ),
      ),
      sequence: Effect.sync(session.sequence),
      outbox,
      sendRecorder: metrics,
      stop: stopSignal,
    },
    session,
    delivery,
    status,
    metrics,
    policy,
  }

  /** Stopped for good: the stream ends and no command waits for a connection that will not come. */
  let stoppedFor: ShardStopped | undefined
  const stopped = (reason: string) =>
    Effect.suspend(() => {
      if (stoppedFor) return Effect.void
      stoppedFor = new ShardStopped({ shard: config.shard, reason })
      return Effect.all(
        [delivery.end, outbox.close(stoppedFor), members.close(stoppedFor), soundboard.close(stoppedFor)],
        {
          discard: true,
        },
      )
    })
  const reasonOf = (exit: Exit.Exit<void, Stop>) =>
    Exit.isSuccess(exit)
      ? "logged out"
      : Option.match(Exit.findErrorOption(exit), { onNone: () => "shut down", onSome: (e) => e._tag })

  const fiber = yield* Effect.forkScoped(
    supervise(shard, {
      gatewayUrl: config.gatewayUrl ?? defaultGatewayUrl,
      stop,
      presence: () => presence,
    }).pipe(
      Effect.onExit((exit) => stopped(reasonOf(exit))),
      Effect.ensuring(session.save),
    ),
  )
  // Also when the scope closes before the loop ever ran.
  yield* Scope.addFinalizer(yield* Effect.scope, stopped("shut down"))

  return {
    id,
    count,
    events: delivery.events,
    status: status.ref,
    health: status.health(delivery, outbox.size),
    send: outbox.send,
    updatePresence: (update) =>
      Effect.andThen(
        outbox.send(Protocol.Op.PresenceUpdate, update),
        Effect.sync(() => {
          presence = update
        }),
      ),
    updateVoiceState: (state) => outbox.send(Protocol.Op.VoiceStateUpdate, state),
    requestSoundboardSounds: (request) => soundboard.request(request, outbox.send),
    requestGuildMembers: (request) => members.request(request, outbox.send),
    logout: Deferred.succeed(stop, "logout").pipe(
      Effect.andThen(Effect.sync(() => stopSignal.request("logout"))),
      Effect.andThen(Fiber.await(fiber)),
      Effect.asVoid,
    ),
    retire: Deferred.succeed(stop, "retire").pipe(
      Effect.andThen(Effect.sync(() => stopSignal.request("retire"))),
      Effect.andThen(Fiber.await(fiber)),
      Effect.asVoid,
    ),
    await: Fiber.join(fiber),
  } satisfies Shard
})

interface Supervision {
  /** Where a new session connects (and a resume whose URL is unusable). */
  readonly gatewayUrl: string
  /** Completed by `logout` or `retire`. */
  readonly stop: Deferred.Deferred<Connection.StopMode>
  /** The presence a new session identifies with. */
  readonly presence: () => GatewayPresenceUpdateData | undefined
}

/**
 * The supervision loop: one attempt at a time, each outcome decided by the policy and
 * carried out, until the shard stops.
 */
const supervise = (
  shard: Attempt.Shard,
  { gatewayUrl, stop, presence }: Supervision,
): Effect.Effect<void, Stop, GatewayTransport> =>
  Effect.gen(function* () {
    const { session, status, metrics, policy } = shard
    let attempts = 0
    let resumeFailures = 0
    let failuresSinceHealthy = 0
    /** What every log line of the shard carries. */
    const annotated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.suspend(() =>
        Effect.annotateLogs(effect, {
          shard: shard.connection.shard[0],
          attempt: attempts,
          session: session.current()?.sessionId ?? "",
        }),
      )
    const forgetSession = Effect.andThen(
      session.forget,
      status.update((s) => ({ ...s, sessionId: undefined })),
    )
    const loggedOut = Effect.andThen(
      forgetSession,
      status.setState({ _tag: "Stopped", reason: "logged out" }),
    )

    while (true) {
      // A logout while disconnected (backing off) ends here, without a new connection.
      if (Deferred.isDoneUnsafe(stop)) return yield* loggedOut
      attempts++
      const resumed = session.current()
      // A server's resume_gateway_url that is no URL at all is not worth a lost session:
      // resume through the gateway URL instead.
      const url = resumed !== undefined && Protocol.isUrl(resumed.resumeUrl) ? resumed.resumeUrl : gatewayUrl
      const { exit, handshook, resumeFailed, healthy, startedAt } = yield* annotated(
        Attempt.run(shard, { number: attempts, resumed, url, presence: presence() }),
      )
      if (handshook) resumeFailures = 0
      // Only `stop` ends a connection successfully: a logout.
      if (Exit.isSuccess(exit)) return yield* loggedOut
      const error = Option.getOrUndefined(Exit.findErrorOption(exit))
      // No typed error: the connection was interrupted or died. Pass that on unchanged.
      if (error === undefined) return yield* Effect.failCause(exit.cause as Cause.Cause<never>)
      if (error._tag === "SessionStartLimitExhausted") {
        yield* status.setState({ _tag: "Stopped", reason: error.message, error })
        return yield* error
      }
      metrics.ended(error)
      failuresSinceHealthy = healthy ? 0 : failuresSinceHealthy + 1
      // Only a Resume the server saw and refused counts toward the resume-loop breaker: an
      // unreachable network is no reason to spend one of the day's identifies.
      if (resumeFailed) resumeFailures++
      const decision = ReconnectPolicy.decide(
        {
          error,
          hasSession: session.current() !== undefined,
          wasFailedResume: resumeFailed,
          resumeFailures,
          failuresSinceHealthy,
          sinceAttemptMillis: (yield* Clock.currentTimeMillis) - startedAt,
        },
        policy,
      )
      const tried = ServerText.sanitize(url) // a resume URL is the server's text
      yield* status.update((s) => ({
        ...s,
        lastError: { tag: error._tag, message: error.message, url: tried },
      }))
      yield* annotated(
        Effect.logDebug(`connection to ${tried} ended (${error._tag}: ${error.message}): ${decision._tag}`),
      )
      if (decision._tag === "Stop") {
        // Not an error log: the app handles the typed failure (`await`) and decides how loud it is.
        yield* annotated(Effect.logDebug(`shard stopped: ${decision.error.message}`))
        yield* forgetSession
        yield* status.setState({ _tag: "Stopped", reason: decision.error.message, error: decision.error })
        return yield* decision.error
      }
      if (decision._tag === "Identify" && session.current() !== undefined) {
        resumeFailures = 0
        yield* forgetSession
      }
      yield* backOff(shard, decision, stop)
    }
  })

/** Waits as the decision says, cut short by a logout. */
const backOff = (
  shard: Attempt.Shard,
  decision: Exclude<ReconnectPolicy.Decision, { readonly _tag: "Stop" }>,
  stop: Deferred.Deferred<Connection.StopMode>,
) =>
  Effect.gen(function* () {
    const millis = ReconnectPolicy.waitMillis(decision.wait, yield* Random.next, shard.policy)
    if (millis <= 0) return
    const now = yield* Clock.currentTimeMillis
    yield* shard.status.setState({ _tag: "BackingOff", until: now + millis, reason: decision.reason })
    yield* Effect.raceFirst(Effect.sleep(millis), Deferred.await(stop)).pipe(
      Effect.withSpan("vigil.backoff", {
        attributes: {
          ...shard.attributes,
          "vigil.backoff.millis": millis,
          "vigil.backoff.reason": decision.reason,
        },
      }),
    )
  })
