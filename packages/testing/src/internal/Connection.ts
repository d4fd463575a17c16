/**
 * One client socket, played the way Discord plays it: Hello, heartbeats ACKed and watched,
 * Identify and Resume validated, commands counted against the rate limit, every frame
 * recorded. Lives in its own scope: when it closes, the socket, its writer, its watchdog
 * and any delayed ACK go with it.
 */
import * as Zlib from "node:zlib"
import { Op } from "@vigil/gateway/Protocol"
import { Clock, Deferred, Effect, Predicate, Result, type Scope } from "effect"
import * as Traffic from "../Traffic.ts"
import * as Encoder from "./Encoder.ts"
import * as Members from "./Members.ts"
import { type Conn, type Outbound, redact, type State, silence } from "./State.ts"
import * as Validate from "./Validate.ts"

const OPEN = 1

/** Commands a client may send; anything else is an unknown opcode (4001). */
const clientOps: ReadonlySet<number> = new Set([
  Op.Heartbeat,
  Op.Identify,
  Op.PresenceUpdate,
  Op.VoiceStateUpdate,
  Op.Resume,
  Op.RequestGuildMembers,
  Op.RequestSoundboardSounds,
])

const reject = (
  state: State,
  conn: Conn,
  refusal: Validate.Refusal,
  shard?: readonly [number, number] | undefined,
): Effect.Effect<void> =>
  Effect.andThen(
    state.record({
      _tag: "Rejected",
      connection: conn.id,
      reason: refusal.reason,
      code: refusal.code,
      invalidSession: undefined,
      shard,
    }),
    Effect.sync(() => state.close(conn, refusal.code, refusal.reason)),
  )

/** Answers Invalid Session; the connection stays open for a fresh Identify. */
const invalidSession = (
  state: State,
  conn: Conn,
  reason: string,
  shard?: readonly [number, number] | undefined,
): Effect.Effect<void> =>
  Effect.andThen(
    state.record({
      _tag: "Rejected",
      connection: conn.id,
      reason,
      code: undefined,
      invalidSession: false,
      shard,
    }),
    Effect.sync(() => state.send(conn, { op: 9, d: false })),
  )

/** A close frame as a server writes it (unmasked, final), for writing past `ws`. */
const closeFrame = (code: number, reason: string): Buffer => {
  if (code === 1005) return Buffer.from([0x88, 0])
  const text = Buffer.from(reason, "utf8").subarray(0, 123)
  const frame = Buffer.alloc(4 + text.length)
  frame[0] = 0x88
  frame[1] = 2 + text.length
  frame.writeUInt16BE(code, 2)
  text.copy(frame, 4)
  return frame
}

/**
 * Ends the link: 1006 destroys it without a close frame; 1005 is a close frame without a
 * code; with `lingerMillis` the close frame goes past `ws` and TCP stays up, silent, that
 * long (the client sees the code, but no TCP close follows), then is destroyed.
 */
const writeClose = (
  conn: Conn,
  item: Outbound & { readonly _tag: "Close" },
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    if (conn.ws.readyState !== OPEN || conn.halfOpen) return
    conn.closedByServer ??= { code: item.code, reason: item.reason }
    if (item.code === 1006) return conn.ws.terminate()
    if (item.lingerMillis !== undefined) {
      silence(conn)
      // The client's FIN (a `ws` client ends TCP once both close frames crossed) ends nothing.
      conn.socket.removeAllListeners("end")
      conn.socket.write(closeFrame(item.code, item.reason))
      const linger = item.lingerMillis
      yield* Effect.forkScoped(
        Effect.andThen(
          Effect.sleep(linger),
          Effect.sync(() => conn.socket.destroy()),
        ),
      )
      return
    }
    if (item.code === 1005) conn.ws.close()
    else conn.ws.close(item.code, item.reason)
  })

/** Writes one queued item: a close frame, or a payload's frames, or records it withheld. */
const write = (
  state: State,
  conn: Conn,
  encoder: Encoder.Encoder,
  item: Outbound,
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    if (item._tag === "Close") return yield* writeClose(conn, item)
    if (conn.halfOpen) {
      return yield* state.record({ _tag: "Withheld", connection: conn.id, op: item.op, t: item.t, s: item.s })
    }
    if (conn.ws.readyState !== OPEN) return
    // Payload compression (Identify's `compress: true`): each payload on its own, zlib, whole.
    const frames = conn.payloadCompression
      ? [Zlib.deflateSync(item.text)]
      : yield* encoder.encode(item.text, item.repeat)
    // The socket may have gone while the frames were being compressed.
    if (conn.ws.readyState !== OPEN) return
    let bytes = 0
    for (const frame of frames) {
      conn.ws.send(frame)
      bytes += typeof frame === "string" ? Buffer.byteLength(frame) : frame.length
    }
    yield* state.record({
      _tag: "Sent",
      connection: conn.id,
      op: item.op,
      t: item.t,
      s: item.s,
      bytes,
      frames: frames.length,
    })
  })

/**
 * The single writer: takes queued items in order. Whatever becomes of an item (written,
 * withheld, or cut short by the connection's end), whoever waits on `written` is released.
 */
const writer = (
  state: State,
  conn: Conn,
  encoder: Encoder.Encoder,
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    while (true) {
      const item = yield* conn.outbox.take
      if (item === undefined) return
      yield* write(state, conn, encoder, item).pipe(
        Effect.ensuring(item.written ? Deferred.succeed(item.written, undefined) : Effect.void),
      )
    }
  })

/** Closes a connection whose heartbeats stopped: due within one interval, plus grace. */
const watchdog = (state: State, conn: Conn): Effect.Effect<void> =>
  Effect.gen(function* () {
    const { heartbeatIntervalMillis, heartbeatGraceMillis, heartbeatTimeoutCode } = state.config
    while (conn.state === "open" && !conn.halfOpen) {
      const now = yield* Clock.currentTimeMillis
      const deadline = conn.lastHeartbeatAt + heartbeatIntervalMillis + heartbeatGraceMillis
      if (now >= deadline) {
        yield* state.record({
          _tag: "Fault",
          connection: conn.id,
          fault: "heartbeat-timeout",
          detail: `no heartbeat for ${now - conn.lastHeartbeatAt} ms`,
        })
        // The session stays resumable, as Discord keeps it after a timed-out connection.
        state.close(conn, heartbeatTimeoutCode, "heartbeat timed out", { invalidate: false })
        return
      }
      yield* Effect.sleep(deadline - now)
    }
  })

const heartbeat = (state: State, conn: Conn, now: number): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    conn.lastHeartbeatAt = now
    const acks = conn.acks
    if (acks === "on") state.send(conn, { op: 11, d: null })
    else if (acks !== "off") {
      yield* Effect.forkScoped(
        Effect.andThen(
          Effect.sleep(acks.delayMillis),
          Effect.sync(() => state.send(conn, { op: 11, d: null })),
        ),
      )
    }
  })

const readyPayload = (state: State, conn: Conn, sessionId: string, shard: readonly [number, number]) => {
  const { config } = state
  return {
    v: conn.version,
    user: {
      id: config.user.id,
      username: config.user.username,
      discriminator: "0",
      global_name: null,
      avatar: null,
      bot: true,
      verified: true,
      mfa_enabled: false,
      flags: 0,
    },
    guilds: config.guilds
      .filter((id) => Traffic.shardOf(id, shard[1]) === shard[0])
      .map((id) => ({ id, unavailable: true })),
    session_id: sessionId,
    session_type: "normal",
    resume_gateway_url: `${state.publicUrl()}/resume`,
    shard,
    application: { id: config.applicationId, flags: 0 },
    private_channels: [],
    relationships: [],
    presences: [],
    guild_join_requests: [],
    geo_ordered_rtc_regions: [],
    user_settings: {},
    _trace: ['["fake-gateway",{"micros":0}]'],
  }
}

/** The scripted end of every connection, queued right behind READY (and its guilds) or RESUMED. */
const endAfterHandshake = (state: State, conn: Conn): Effect.Effect<void> =>
  Effect.gen(function* () {
    const ending = state.config.endAfterHandshake
    if (ending === undefined) return
    const detail =
      ending._tag === "Close"
        ? `close ${ending.code}${ending.lingerMillis === undefined ? "" : `, TCP held ${ending.lingerMillis} ms`}`
        : ending._tag === "Reconnect"
          ? "op 7"
          : "a malformed frame"
    yield* state.record({ _tag: "Fault", connection: conn.id, fault: "end-after-handshake", detail })
    switch (ending._tag) {
      case "Close":
        return state.close(conn, ending.code, "ended after the handshake", {
          lingerMillis: ending.lingerMillis,
        })
      case "Reconnect":
        return state.send(conn, { op: 7, d: null })
      case "Malformed":
        // Recorded as sent with op -1: not a gateway payload at all.
        return state.enqueue(conn, { _tag: "Payload", text: "{malformed", op: -1, t: null, s: null })
    }
  })

const identify = (state: State, conn: Conn, d: unknown, now: number): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (conn.auth !== "none")
      return yield* reject(state, conn, { code: 4005, reason: "already authenticated" })
    const named = Validate.shardOf(d)
    const checked = Validate.identify(d, {
      token: state.config.token,
      shardingRequired: state.shardingRequired,
      allowedPrivilegedIntents: state.config.allowedPrivilegedIntents,
    })
    if (Result.isFailure(checked)) return yield* reject(state, conn, checked.failure, named)
    const { intents, shard } = checked.success
    const refused = state.takeIdentifyTurn(shard[0], now)
    if (refused !== undefined) return yield* invalidSession(state, conn, refused, shard)

    // Payload compression only applies without transport compression, which supersedes it.
    conn.payloadCompression = checked.success.compress && conn.compression === undefined
    const session = state.newSession(shard, intents)
    session.connection = conn
    conn.session = session
    conn.shard = shard
    conn.auth = "identified"
    yield* state.record({ _tag: "Identified", connection: conn.id, session: session.id, shard, intents })
    state.dispatch(session, "READY", readyPayload(state, conn, session.id, shard))
    // Like Discord, each guild of the shard follows READY as a GUILD_CREATE.
    for (const id of state.config.guilds) {
      if (Traffic.shardOf(id, shard[1]) === shard[0])
        state.dispatch(session, "GUILD_CREATE", Traffic.guildCreate(id))
    }
    yield* endAfterHandshake(state, conn)
  })

const resume = (state: State, conn: Conn, d: unknown, now: number): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (conn.auth !== "none")
      return yield* reject(state, conn, { code: 4005, reason: "already authenticated" })
    const checked = Validate.resume(d, state.config.token)
    if (Result.isFailure(checked)) return yield* reject(state, conn, checked.failure)
    const { sessionId, seq } = checked.success
    const session = state.sessions.get(sessionId)
    if (session === undefined) return yield* invalidSession(state, conn, `unknown session ${sessionId}`)
    if (!state.isResumable(session, now)) {
      return yield* invalidSession(
        state,
        conn,
        `session ${sessionId} cannot be resumed: ${session.ended}`,
        session.shard,
      )
    }
    const from = seq ?? 0
    if (from > session.seq) {
      return yield* reject(state, conn, {
        code: 4007,
        reason: `invalid seq ${from}: the session is at ${session.seq}`,
      })
    }
    const oldest = session.buffer[0]?.s ?? session.seq + 1
    if (from < oldest - 1) {
      return yield* reject(state, conn, {
        code: 4007,
        reason: `invalid seq ${from}: dispatches before ${oldest} are no longer kept`,
      })
    }
    const previous = session.connection
    if (previous !== undefined && previous !== conn && previous.state !== "closed") {
      yield* state.record({
        _tag: "Fault",
        connection: previous.id,
        fault: "superseded",
        detail: `session ${sessionId} resumed on connection ${conn.id}`,
      })
      previous.session = undefined
      state.drop(previous, "superseded by a resume")
    }
    // Attaching and queueing the replay happen together, so a dispatch produced meanwhile
    // is queued after the replay, never in the middle of it.
    session.connection = conn
    session.detachedAt = undefined
    conn.session = session
    conn.shard = session.shard
    conn.auth = "resumed"
    const replay = session.buffer.filter((entry) => entry.s > from)
    for (const entry of replay) {
      conn.outbox.push({ _tag: "Payload", text: entry.text, op: 0, t: entry.t, s: entry.s })
    }
    state.dispatch(session, "RESUMED", { _trace: ['["fake-gateway",{"micros":0}]'] })
    yield* state.record({
      _tag: "Resumed",
      connection: conn.id,
      session: session.id,
      shard: session.shard,
      from: seq,
      replayed: replay.length,
    })
    yield* endAfterHandshake(state, conn)
  })

/** Request Guild Members: chunks carrying the nonce, or RATE_LIMITED over the request rate. */
const requestMembers = (state: State, conn: Conn, d: unknown, now: number): Effect.Effect<void> => {
  const parsed = Members.parse(d)
  if (Result.isFailure(parsed)) return reject(state, conn, parsed.failure)
  const session = conn.session
  if (session === undefined) return Effect.void
  const request = parsed.success
  const limit = state.config.members.requestLimit
  if (limit !== undefined) {
    while (conn.memberRequests.length > 0 && conn.memberRequests[0]! <= now - limit.windowMillis) {
      conn.memberRequests.shift()
    }
    if (conn.memberRequests.length >= limit.requests) {
      const retryAfter = conn.memberRequests[0]! + limit.windowMillis - now
      state.dispatch(session, "RATE_LIMITED", Members.rateLimited(request, retryAfter))
      return Effect.void
    }
    conn.memberRequests.push(now)
  }
  for (const chunk of Members.chunks(request, state.config.members)) {
    state.dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)
  }
  return Effect.void
}

const handleMessage = (state: State, conn: Conn, data: Buffer): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const text = data.toString("utf8")
    const payload = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: () => "malformed",
    }).pipe(Effect.orElseSucceed(() => undefined))
    const envelope =
      Predicate.isObject(payload) && !Array.isArray(payload)
        ? (payload as Record<string, unknown>)
        : undefined
    const op =
      envelope !== undefined && Number.isInteger(envelope["op"]) ? (envelope["op"] as number) : undefined
    const ignored = conn.state !== "open"
    yield* state.record({
      _tag: "Received",
      connection: conn.id,
      op,
      bytes: data.length,
      payload: payload === undefined ? undefined : redact(payload),
      ignored,
    })
    if (ignored) return

    const { commands, windowMillis } = state.config.commandLimit
    conn.commandTimes.push(now)
    while (conn.commandTimes.length > 0 && conn.commandTimes[0]! <= now - windowMillis)
      conn.commandTimes.shift()
    if (conn.commandTimes.length > commands) {
      return yield* reject(state, conn, {
        code: 4008,
        reason: `more than ${commands} commands in ${windowMillis} ms`,
      })
    }
    if (data.length > state.config.maxPayloadBytes) {
      return yield* reject(state, conn, {
        code: 4002,
        reason: `payload of ${data.length} bytes exceeds ${state.config.maxPayloadBytes}`,
      })
    }
    if (envelope === undefined || op === undefined) {
      return yield* reject(state, conn, { code: 4002, reason: "decode error: not a gateway payload" })
    }
    if (!clientOps.has(op)) return yield* reject(state, conn, { code: 4001, reason: `unknown opcode ${op}` })
    // A server that ACKs heartbeats but never answers the handshake.
    if ((op === Op.Identify || op === Op.Resume) && state.config.ignoreHandshake) return
    switch (op) {
      case Op.Heartbeat:
        return yield* heartbeat(state, conn, now)
      case Op.Identify:
        return yield* identify(state, conn, envelope["d"], now)
      case Op.Resume:
        return yield* resume(state, conn, envelope["d"], now)
    }
    if (conn.auth === "none") return yield* reject(state, conn, { code: 4003, reason: "not authenticated" })
    if (op === Op.RequestGuildMembers) return yield* requestMembers(state, conn, envelope["d"], now)
  })

const closedBy = (conn: Conn, code: number) => {
  if (conn.closedByServer !== undefined) return { by: "server" as const, ...conn.closedByServer }
  return { by: code === 1006 ? ("network" as const) : ("client" as const), code, reason: "" }
}

/**
 * Runs one connection until its socket closes. The caller wires the socket's events into
 * `conn.inbox` synchronously on accept, so nothing that arrives before this fiber runs is lost.
 */
export const run = (state: State, conn: Conn, search: URLSearchParams): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function* () {
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          conn.state = "closed"
          conn.outbox.close()
          for (const item of conn.outbox.drain())
            if (item.written) Deferred.doneUnsafe(item.written, Effect.void)
          conn.ws.terminate()
          Deferred.doneUnsafe(conn.closed, Effect.void)
        }),
      )
      yield* state.record({ _tag: "Opened", connection: conn.id, path: conn.path })
      const query = Validate.connectQuery(search)
      if (Result.isSuccess(query)) {
        conn.version = query.success.version
        conn.compression = query.success.compression
      }
      const encoder = yield* Encoder.make(conn.compression, { zlibFrameBytes: state.config.zlibFrameBytes })
      yield* Effect.forkScoped(writer(state, conn, encoder))
      if (Result.isFailure(query)) {
        yield* reject(state, conn, query.failure)
      } else {
        yield* Effect.forkScoped(
          Effect.gen(function* () {
            if (state.config.helloDelayMillis > 0) yield* Effect.sleep(state.config.helloDelayMillis)
            conn.lastHeartbeatAt = yield* Clock.currentTimeMillis
            state.send(conn, {
              op: 10,
              d: { heartbeat_interval: state.config.heartbeatIntervalMillis, _trace: ['["fake-gateway"]'] },
            })
            yield* watchdog(state, conn)
          }),
        )
      }
      while (true) {
        const event = yield* conn.inbox.take
        if (event === undefined || event._tag === "Close") {
          const code = event?.code ?? 1006
          const { by, reason, code: recorded } = closedBy(conn, code)
          const now = yield* Clock.currentTimeMillis
          conn.state = "closed"
          state.detach(conn, now)
          // A client that closes with 1000/1001 ends its session: the bot goes offline.
          if (by === "client" && (code === 1000 || code === 1001) && conn.session !== undefined) {
            state.endSession(conn.session, `client closed with ${code}`)
          }
          yield* state.record({
            _tag: "Closed",
            connection: conn.id,
            code: recorded,
            reason: by === "client" ? (event?.reason ?? "") : reason,
            by,
          })
          return
        }
        yield* handleMessage(state, conn, event.data)
      }
    }),
  )
