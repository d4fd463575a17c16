/**
 * A Shard keeps one Discord session alive across any number of connections. Its loop
 * runs one scoped `Connection` at a time; when it ends, `ReconnectPolicy.decide` says
 * what comes next (resume, identify, stop) and the loop carries it out. Events leave
 * through a bounded queue that outlives connections, deduplicated by sequence so a resume
 * neither loses nor repeats a dispatch.
 */
import {
  type Cause,
  Clock,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Fiber,
  Option,
  Queue,
  Random,
  type Redacted,
  type Scope,
  Stream,
  SubscriptionRef,
} from "effect"
import * as Connection from "./Connection.ts"
import type {
  ConnectionError,
  FatalGatewayError,
  PayloadTooLarge,
  SessionStartLimitExhausted,
} from "./GatewayError.ts"
import { IdentifyThrottle } from "./IdentifyThrottle.ts"
import * as Members from "./Members.ts"
import * as Outbox from "./Outbox.ts"
import type * as Protocol from "./Protocol.ts"
import * as ReconnectPolicy from "./ReconnectPolicy.ts"
import { SessionStore, type StoredSession } from "./SessionStore.ts"
import type { GatewayTransport } from "./Transport.ts"

export interface ShardConfig {
  readonly token: Redacted.Redacted<string>
  readonly intents: number
  readonly shard: readonly [id: number, count: number]
  /** From `GET /gateway/bot`. Default `wss://gateway.discord.gg`. */
  readonly gatewayUrl?: string | undefined
  readonly compression?: Protocol.Compression | undefined
  readonly properties?: Protocol.IdentifyProperties | undefined
  readonly largeThreshold?: number | undefined
  readonly presence?: unknown
  readonly helloTimeout?: Duration.Input | undefined
  readonly handshakeTimeout?: Duration.Input | undefined
  readonly maxMessageBytes?: number | undefined
  readonly policy?: Partial<ReconnectPolicy.PolicyConfig> | undefined
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
    readonly strategy?: "backpressure" | "dropping" | "sliding"
  }
}

export type ShardState =
  | { readonly _tag: "Connecting" }
  | { readonly _tag: "Identifying" }
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
  readonly lastError: { readonly tag: string; readonly message: string } | undefined
}

export interface ShardHealth extends ShardStatus {
  readonly lastEventAt: number | undefined
  readonly delivered: number
  /** Replayed dispatches dropped because they had already been delivered. */
  readonly duplicates: number
  /** Events dropped by a `dropping`/`sliding` buffer. */
  readonly dropped: number
  readonly queuedCommands: number
}

export interface Shard {
  readonly id: number
  readonly count: number
  /** Every dispatch, exactly once and in order, across reconnects. One consumer. */
  readonly events: Stream.Stream<Protocol.Dispatch>
  readonly status: SubscriptionRef.SubscriptionRef<ShardStatus>
  readonly health: Effect.Effect<ShardHealth>
  /**
   * Sends a command (op, d). Waits while disconnected and flushes after READY/RESUMED,
   * through the connection's send limiter; refused at once if over 4096 bytes.
   */
  readonly send: (op: number, d: unknown) => Effect.Effect<void, PayloadTooLarge>
  readonly requestGuildMembers: (
    request: Members.RequestGuildMembers,
  ) => Effect.Effect<Members.GuildMembersResult, Members.GuildMembersError | PayloadTooLarge>
  /** Ends the session: closes with 1000 (the bot shows offline) and stops the shard. */
  readonly logout: Effect.Effect<void>
  /** Waits until the shard stops: succeeds after logout, fails with a fatal error. */
  readonly await: Effect.Effect<void, FatalGatewayError | SessionStartLimitExhausted>
}

const defaultGatewayUrl = "wss://gateway.discord.gg"

type Stop = FatalGatewayError | SessionStartLimitExhausted

/**
 * Starts a shard in the current scope. Closing the scope closes its connection with a
 * resumable code (the session can be resumed, even by another process via the store).
 */
export const make = Effect.fnUntraced(function* (
  config: ShardConfig,
): Effect.fn.Return<Shard, never, Scope.Scope | GatewayTransport | SessionStore | IdentifyThrottle> {
  const [id, count] = config.shard
  const store = yield* SessionStore
  // Read synchronously per batch on the hot path (TestClock in tests, as everywhere).
  const clock = yield* Clock.Clock
  const throttle = yield* IdentifyThrottle
  const transportContext = yield* Effect.context<GatewayTransport>()
  const policy = { ...ReconnectPolicy.defaultConfig, ...config.policy }

  const capacity = config.events?.capacity ?? 1024
  const strategy = config.events?.strategy ?? "backpressure"
  const queue = yield* Queue.make<Protocol.Dispatch, Cause.Done>({
    capacity,
    strategy: strategy === "backpressure" ? "suspend" : strategy,
  })
  const outbox = yield* Outbox.make
  const members = Members.makeRegistry()

  const status = yield* SubscriptionRef.make<ShardStatus>({
    shard: config.shard,
    state: { _tag: "Connecting" },
    latency: undefined,
    sessionId: undefined,
    connections: 0,
    identifies: 0,
    resumes: 0,
    lastError: undefined,
  })
  const setStatus = (f: (s: ShardStatus) => ShardStatus) => SubscriptionRef.update(status, f)
  const setState = (state: ShardState) => setStatus((s) => ({ ...s, state }))

  // The session, owned by this shard's loop (mutable: `sequence` moves with every event,
  // and counts only delivered ones). The store gets a copy.
  const stored = Option.getOrUndefined(yield* store.load(id))
  let session: Mutable<StoredSession> | undefined =
    stored && stored.shardCount === count ? { ...stored } : undefined
  let lastEventAt: number | undefined
  let delivered = 0
  let duplicates = 0
  let dropped = 0

  const saveSession = Effect.suspend(() => (session ? store.save(id, { ...session }) : store.clear(id)))

  /**
   * Hands a batch to the consumer's queue. The hot path: synchronous while the queue has
   * room; when it is full (back-pressure) it waits for that one event, then goes on. The
   * sequence advances event by event as each is accepted, so an interruption at any point
   * leaves it exact: a resume replays from there, nothing lost, nothing twice.
   */
  const accept = (dispatch: Protocol.Dispatch) => {
    members.observe(dispatch)
    delivered++
    if (session) session.sequence = dispatch.seq
  }
  const deliver = (batch: ReadonlyArray<Protocol.Dispatch>, from = 0): Effect.Effect<void> =>
    Effect.suspend(() => {
      for (let i = from; i < batch.length; i++) {
        const dispatch = batch[i]!
        // A resume replays what followed the sequence we sent; anything already handed
        // over (by sequence, within the same session) is dropped here.
        if (session?.sequence != null && dispatch.seq <= session.sequence) {
          duplicates++
          continue
        }
        if (strategy === "sliding" && Queue.sizeUnsafe(queue) >= capacity) dropped++
        if (!Queue.offerUnsafe(queue, dispatch)) {
          if (strategy === "dropping") {
            dropped++ // by choice: the sequence moves past it, a resume will not bring it back
            if (session) session.sequence = dispatch.seq
            continue
          } else {
            return Effect.flatMap(Queue.offer(queue, dispatch), () => {
              accept(dispatch)
              return deliver(batch, i + 1)
            })
          }
        }
        accept(dispatch)
      }
      lastEventAt = clock.currentTimeMillisUnsafe()
      return Effect.void
    })

  const stop = yield* Deferred.make<Connection.StopMode>()
  let resumeFailures = 0
  let failuresSinceReady = 0

  const attempt = Effect.gen(function* () {
    const resuming = session !== undefined
    const handshake: Connection.Handshake = session
      ? { _tag: "resume", sessionId: session.sessionId, seq: session.sequence }
      : { _tag: "identify" }
    yield* setStatus((s) => ({
      ...s,
      state: { _tag: resuming ? "Resuming" : "Identifying" },
      connections: s.connections + 1,
    }))
    let reachedReady = false
    let sentHandshake = false // Hello came, so Identify/Resume went out right after
    const exit = yield* Effect.exit(
      Connection.run({
        url: session?.resumeUrl ?? config.gatewayUrl ?? defaultGatewayUrl,
        token: config.token,
        intents: config.intents,
        shard: config.shard,
        handshake,
        compression: config.compression,
        helloTimeout: config.helloTimeout,
        handshakeTimeout: config.handshakeTimeout,
        maxMessageBytes: config.maxMessageBytes,
        properties: config.properties,
        largeThreshold: config.largeThreshold,
        presence: config.presence,
        beforeIdentify: throttle.wait(id),
        sequence: Effect.sync(() => session?.sequence ?? null),
        outbox,
        stop: Deferred.await(stop),
        onEvent: (event) => {
          switch (event._tag) {
            case "Dispatches":
              return deliver(event.dispatches)
            case "Ready":
              return Effect.gen(function* () {
                // A new session: sequences start again at 1.
                session = {
                  sessionId: event.ready.session_id,
                  sequence: 0,
                  resumeUrl: event.ready.resume_gateway_url,
                  shardCount: count,
                }
                reachedReady = true
                resumeFailures = 0
                failuresSinceReady = 0
                yield* saveSession
                const now = yield* Clock.currentTimeMillis
                yield* setStatus((s) => ({
                  ...s,
                  state: { _tag: "Ready", since: now },
                  sessionId: event.ready.session_id,
                  identifies: s.identifies + 1,
                }))
              })
            case "Resumed":
              return Effect.gen(function* () {
                reachedReady = true
                resumeFailures = 0
                failuresSinceReady = 0
                const now = yield* Clock.currentTimeMillis
                yield* setStatus((s) => ({
                  ...s,
                  state: { _tag: "Ready", since: now },
                  resumes: s.resumes + 1,
                }))
              })
            case "Latency":
              return setStatus((s) => ({ ...s, latency: event.millis }))
            case "Hello":
              return Effect.sync(() => {
                sentHandshake = true
              })
            default:
              return Effect.void
          }
        },
      }).pipe(Effect.provideContext(transportContext)),
    )
    yield* saveSession
    return { exit, resumeFailed: resuming && sentHandshake && !reachedReady, reachedReady }
  })

  /** Carries out decisions until the shard stops. */
  const loggedOut = Effect.gen(function* () {
    session = undefined
    yield* store.clear(id)
    yield* setState({ _tag: "Stopped", reason: "logged out" })
  })

  const loop: Effect.Effect<void, Stop> = Effect.gen(function* () {
    while (true) {
      // A logout while disconnected (backing off) ends here, without a new connection.
      if (Deferred.isDoneUnsafe(stop)) return yield* loggedOut
      const { exit, resumeFailed, reachedReady } = yield* attempt
      // Only `stop` ends a connection successfully: a logout.
      if (Exit.isSuccess(exit)) return yield* loggedOut
      const error: ConnectionError | SessionStartLimitExhausted | undefined = Option.getOrUndefined(
        Exit.findErrorOption(exit),
      )
      // No typed error: the connection was interrupted or died. Pass that on unchanged.
      if (error === undefined) return yield* Effect.failCause(exit.cause as Cause.Cause<never>)
      if (error._tag === "SessionStartLimitExhausted") {
        yield* setState({ _tag: "Stopped", reason: error.message, error })
        return yield* error
      }
      if (!reachedReady) failuresSinceReady++
      // Only a Resume the server saw and refused counts toward the resume-loop breaker: an
      // unreachable network is no reason to spend one of the day's identifies.
      if (resumeFailed) resumeFailures++
      const decision = ReconnectPolicy.decide(
        {
          error,
          hasSession: session !== undefined,
          wasFailedResume: resumeFailed,
          resumeFailures,
          failuresSinceReady,
        },
        policy,
      )
      yield* setStatus((s) => ({ ...s, lastError: { tag: error._tag, message: error.message } }))
      yield* Effect.logDebug(`shard ${id}: connection ended (${error._tag}): ${decision._tag}`)
      if (decision._tag === "Stop") {
        session = undefined
        yield* store.clear(id)
        yield* Effect.logError(`shard ${id} stopped: ${decision.error.message}`)
        yield* setState({ _tag: "Stopped", reason: decision.error.message, error: decision.error })
        return yield* decision.error
      }
      if (decision._tag === "Identify" && session !== undefined) {
        session = undefined
        resumeFailures = 0
        yield* store.clear(id)
      }
      yield* waitFor(decision)
    }
  })

  const waitFor = (decision: Exclude<ReconnectPolicy.Decision, { readonly _tag: "Stop" }>) =>
    Effect.gen(function* () {
      const wait = decision.wait
      if (wait._tag === "None") return
      const r = yield* Random.next
      const millis =
        wait._tag === "InvalidSession"
          ? ReconnectPolicy.invalidSessionMillis(r)
          : ReconnectPolicy.backoffMillis(wait.failures, r, policy)
      const now = yield* Clock.currentTimeMillis
      yield* setState({ _tag: "BackingOff", until: now + millis, reason: decision.reason })
      yield* Effect.raceFirst(Effect.sleep(millis), Deferred.await(stop))
    })

  const fiber = yield* Effect.forkScoped(
    loop.pipe(
      Effect.onExit(() => Queue.end(queue)),
      Effect.ensuring(saveSession),
    ),
  )

  const health: Effect.Effect<ShardHealth> = Effect.gen(function* () {
    const s = yield* SubscriptionRef.get(status)
    const queuedCommands = yield* outbox.size
    return { ...s, lastEventAt, delivered, duplicates, dropped, queuedCommands }
  })

  return {
    id,
    count,
    events: Stream.fromQueue(queue),
    status,
    health,
    send: outbox.send,
    requestGuildMembers: (request) => members.request(request, outbox.send),
    logout: Deferred.succeed(stop, "logout").pipe(Effect.andThen(Fiber.await(fiber)), Effect.asVoid),
    await: Fiber.join(fiber),
  } satisfies Shard
})

type Mutable<A> = { -readonly [K in keyof A]: A[K] }
