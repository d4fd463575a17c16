/**
 * The fake gateway's state: its connections, its sessions (each with a sequence counter and
 * a replay buffer), the identify buckets and the daily session start budget, and the
 * recording. Mutated only from fibers; every write to a socket goes through the
 * connection's outbox, so the order frames are produced in is the order they hit the wire.
 */
import type { Duplex } from "node:stream"
import { classifyClose, isSessionEndingCode } from "@vigil/gateway/Protocol"
import { Clock, Deferred, Effect } from "effect"
import type { WebSocket } from "ws"
import * as FakeRest from "../FakeRest.ts"
import type * as Recording from "../Recording.ts"
import * as Traffic from "../Traffic.ts"
import type { TransportCompression } from "./Encoder.ts"
import * as Inbox from "./Inbox.ts"
import type * as Members from "./Members.ts"

export interface ResolvedConfig {
  readonly token: string
  readonly heartbeatIntervalMillis: number
  readonly heartbeatGraceMillis: number
  readonly heartbeatTimeoutCode: number
  readonly helloDelayMillis: number
  /** What every connection gets right after READY or RESUMED, if anything. */
  readonly endAfterHandshake: HandshakeEnding | undefined
  /** Identify and Resume are recorded but never answered. */
  readonly ignoreHandshake: boolean
  readonly shards: number
  readonly requiredShards: number
  /** A shard holding more of `guilds` than this is refused (and closed) with 4011. */
  readonly maxGuildsPerShard: number | undefined
  readonly maxConcurrency: number
  readonly identifyWindowMillis: number
  readonly sessionStartLimit: {
    readonly total: number
    readonly remaining: number
    readonly resetAfterMillis: number
  }
  readonly allowedPrivilegedIntents: number
  readonly resumeWindowMillis: number
  readonly replayLimit: number
  readonly commandLimit: { readonly commands: number; readonly windowMillis: number }
  readonly maxPayloadBytes: number
  readonly zlibFrameBytes: number | undefined
  readonly guilds: ReadonlyArray<string>
  readonly user: { readonly id: string; readonly username: string }
  readonly applicationId: string
  /** `FakeRest`'s config but for the token and the author, which are the gateway's. */
  readonly rest: Omit<FakeRest.Config, "token" | "bot">
  readonly members: Members.MembersConfig
}

/** How a connection is ended right after its handshake (see `FakeGateway.Config.endAfterHandshake`). */
export type HandshakeEnding =
  | { readonly _tag: "Close"; readonly code: number; readonly lingerMillis: number | undefined }
  | { readonly _tag: "Reconnect" }
  | { readonly _tag: "Malformed" }

export interface BufferedDispatch {
  readonly s: number
  readonly t: string
  readonly text: string
}

export interface Session {
  readonly id: string
  readonly shard: readonly [number, number]
  readonly intents: number
  readonly createdIndex: number
  seq: number
  /** Dispatches kept for Resume, oldest first, at most `replayLimit`. */
  readonly buffer: Array<BufferedDispatch>
  connection: Conn | undefined
  /** When the session last lost its connection: the resume window runs from here. */
  detachedAt: number | undefined
  /** Why the session can no longer be resumed, once it cannot. */
  ended: string | undefined
}

export type Outbound =
  | {
      readonly _tag: "Payload"
      readonly text: string
      readonly op: number
      readonly t: string | null
      readonly s: number | null
      /** Sent as `repeat` copies of `text` in one compressed flush (a bomb); default 1. */
      readonly repeat?: number | undefined
      readonly written?: Deferred.Deferred<void> | undefined
    }
  | {
      readonly _tag: "Close"
      readonly code: number
      readonly reason: string
      /** The close frame goes, but TCP stays open (nothing read or answered) this long, then is destroyed. */
      readonly lingerMillis?: number | undefined
      readonly written?: Deferred.Deferred<void> | undefined
    }

export type Inbound =
  | { readonly _tag: "Message"; readonly data: Buffer }
  | { readonly _tag: "Close"; readonly code: number; readonly reason: string }

export type AckMode = "on" | "off" | { readonly delayMillis: number }

export interface Conn {
  readonly id: number
  readonly path: string
  readonly ws: WebSocket
  readonly socket: Duplex
  readonly inbox: Inbox.Inbox<Inbound>
  readonly outbox: Inbox.Inbox<Outbound>
  readonly closed: Deferred.Deferred<void>
  version: number
  compression: TransportCompression | undefined
  /** Identify asked for `compress: true`: every payload after it is zlib-compressed on its own. */
  payloadCompression: boolean
  state: "open" | "closing" | "closed"
  auth: "none" | "identified" | "resumed"
  session: Session | undefined
  shard: readonly [number, number] | undefined
  acks: AckMode
  halfOpen: boolean
  /** Set when the server ended the link: its close code, or 1006 for a drop. */
  closedByServer: { readonly code: number; readonly reason: string } | undefined
  lastHeartbeatAt: number
  /** Arrival times of the commands inside the current rate-limit window. */
  readonly commandTimes: Array<number>
  /** Arrival times of the member requests inside the current request-limit window. */
  readonly memberRequests: Array<number>
}

type Draft = Recording.Entry extends infer E
  ? E extends Recording.Entry
    ? Omit<E, "index" | "at">
    : never
  : never

const day = 24 * 60 * 60 * 1000

export const make = (config: ResolvedConfig, startedAt: number) => {
  const entries: Array<Recording.Entry> = []
  const watchers = new Set<{
    readonly test: (entry: Recording.Entry) => boolean
    readonly found: Deferred.Deferred<Recording.Entry>
  }>()
  const conns = new Map<number, Conn>()
  const sessions = new Map<string, Session>()
  const identifyBuckets = new Map<number, number>()
  const startLimit = {
    remaining: config.sessionStartLimit.remaining,
    resetAt: startedAt + config.sessionStartLimit.resetAfterMillis,
  }
  const rest = FakeRest.handler({ ...config.rest, token: config.token, bot: config.user })
  let nextConnection = 1
  let nextSession = 1
  // Session ids differ between fake servers (by start time) and within one (by count).
  const instance = (Math.floor(startedAt) % 0x1_0000_0000).toString(16).padStart(8, "0")
  let publicUrl = ""
  // Settable at run time: a bot that grows sees its recommendation rise and its shards refused.
  let recommendedShards = config.shards
  let maxGuildsPerShard = config.maxGuildsPerShard
  const guildsOn = (shard: readonly [number, number]) =>
    config.guilds.filter((id) => Traffic.shardOf(id, shard[1]) === shard[0]).length
  /** Why a shard may not run (4011), if it may not. */
  const shardingRequired = (shard: readonly [number, number]): string | undefined => {
    if (shard[1] < config.requiredShards) {
      return `sharding required: at least ${config.requiredShards} shards, got ${shard[1]}`
    }
    if (maxGuildsPerShard !== undefined) {
      const held = guildsOn(shard)
      if (held > maxGuildsPerShard) {
        return `sharding required: shard ${shard[0]}/${shard[1]} would hold ${held} guilds (max ${maxGuildsPerShard})`
      }
    }
    return undefined
  }

  const record = (draft: Draft): Effect.Effect<void> =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => {
      const entry = { ...draft, index: entries.length, at } as Recording.Entry
      entries.push(entry)
      for (const watcher of watchers) {
        if (watcher.test(entry)) {
          watchers.delete(watcher)
          Deferred.doneUnsafe(watcher.found, Effect.succeed(entry))
        }
      }
      return Effect.void
    })

  /** Resolves with the first entry, already recorded or still to come, that passes `test`. */
  const awaitEntry = (test: (entry: Recording.Entry) => boolean): Effect.Effect<Recording.Entry> =>
    Effect.suspend(() => {
      const seen = entries.find(test)
      if (seen !== undefined) return Effect.succeed(seen)
      const watcher = { test, found: Deferred.makeUnsafe<Recording.Entry>() }
      watchers.add(watcher)
      return Deferred.await(watcher.found).pipe(Effect.ensuring(Effect.sync(() => watchers.delete(watcher))))
    })

  const newConn = (ws: WebSocket, socket: Duplex, path: string): Conn => {
    const conn: Conn = {
      id: nextConnection++,
      path,
      ws,
      socket,
      inbox: Inbox.make(),
      outbox: Inbox.make(),
      closed: Deferred.makeUnsafe(),
      version: 10,
      compression: undefined,
      payloadCompression: false,
      state: "open",
      auth: "none",
      session: undefined,
      shard: undefined,
      acks: "on",
      halfOpen: false,
      closedByServer: undefined,
      lastHeartbeatAt: 0,
      commandTimes: [],
      memberRequests: [],
    }
    conns.set(conn.id, conn)
    return conn
  }

  const isResumable = (session: Session, now: number): boolean => {
    if (session.ended !== undefined) return false
    if (session.connection === undefined && session.detachedAt !== undefined) {
      if (now - session.detachedAt > config.resumeWindowMillis) session.ended = "expired"
    }
    return session.ended === undefined
  }

  const newSession = (shard: readonly [number, number], intents: number): Session => {
    const hex = (nextSession++).toString(16).padStart(8, "0")
    const session: Session = {
      id: `fake${hex}${instance}${hex}`,
      shard,
      intents,
      createdIndex: entries.length,
      seq: 0,
      buffer: [],
      connection: undefined,
      detachedAt: undefined,
      ended: undefined,
    }
    sessions.set(session.id, session)
    return session
  }

  /** Queues a frame; when the connection is past taking any, `written` resolves at once. */
  const enqueue = (conn: Conn, item: Outbound) => {
    if (!conn.outbox.push(item) && item.written) Deferred.doneUnsafe(item.written, Effect.void)
  }

  /** Queues a payload on a connection; `written` resolves once it is on the wire (or withheld). */
  const send = (
    conn: Conn,
    payload: { op: number; d: unknown; t?: string; s?: number },
    written?: Deferred.Deferred<void>,
  ) => {
    const t = payload.t ?? null
    const s = payload.s ?? null
    enqueue(conn, {
      _tag: "Payload",
      text: JSON.stringify({ op: payload.op, d: payload.d, s, t }),
      op: payload.op,
      t,
      s,
      written,
    })
  }

  /** Appends a dispatch to the session (sequence, replay buffer) and sends it if connected. */
  const dispatch = (session: Session, t: string, d: unknown, written?: Deferred.Deferred<void>): number => {
    const s = ++session.seq
    const text = JSON.stringify({ op: 0, t, s, d })
    session.buffer.push({ s, t, text })
    if (session.buffer.length > config.replayLimit) session.buffer.shift()
    const conn = session.connection
    if (conn !== undefined && conn.state === "open") {
      enqueue(conn, { _tag: "Payload", text, op: 0, t, s, written })
    } else if (written) Deferred.doneUnsafe(written, Effect.void)
    return s
  }

  const endSession = (session: Session, why: string) => {
    if (session.ended === undefined) session.ended = why
  }

  const detach = (conn: Conn, now: number) => {
    const session = conn.session
    if (session !== undefined && session.connection === conn) {
      session.connection = undefined
      session.detachedAt = now
    }
  }

  /**
   * The server closes a connection with `code`. The session ends when the code means "start
   * a new session" (per the close code table) unless `invalidate` says otherwise.
   */
  const close = (
    conn: Conn,
    code: number,
    reason: string,
    options: {
      readonly invalidate?: boolean | undefined
      readonly lingerMillis?: number | undefined
      readonly written?: Deferred.Deferred<void> | undefined
    } = {},
  ) => {
    if (conn.state !== "open") {
      if (options.written) Deferred.doneUnsafe(options.written, Effect.void)
      return
    }
    conn.state = "closing"
    const invalidate = options.invalidate ?? (isSessionEndingCode(code) || classifyClose(code) !== "resume")
    if (invalidate && conn.session !== undefined) endSession(conn.session, `server closed with ${code}`)
    enqueue(conn, {
      _tag: "Close",
      code,
      reason,
      lingerMillis: options.lingerMillis,
      written: options.written,
    })
  }

  /** The TCP link goes without a close frame. */
  const drop = (conn: Conn, reason: string) => {
    if (conn.state === "closed") return
    conn.state = "closing"
    conn.closedByServer ??= { code: 1006, reason }
    conn.ws.terminate()
  }

  /** The daily identify budget as `GET /gateway/bot` reports it, reset when its time comes. */
  const sessionStartLimit = (now: number) => {
    if (now >= startLimit.resetAt) {
      startLimit.remaining = config.sessionStartLimit.total
      startLimit.resetAt = now + day
    }
    return {
      total: config.sessionStartLimit.total,
      remaining: startLimit.remaining,
      reset_after: Math.max(0, startLimit.resetAt - now),
      max_concurrency: config.maxConcurrency,
    }
  }

  /**
   * Takes an identify turn for `shardId`: fails with why when its bucket identified less
   * than a window ago or the day's budget is spent.
   */
  const takeIdentifyTurn = (shardId: number, now: number): string | undefined => {
    const bucket = shardId % config.maxConcurrency
    const next = identifyBuckets.get(bucket) ?? Number.NEGATIVE_INFINITY
    if (now < next) return `identify rate limited: bucket ${bucket} may identify again in ${next - now} ms`
    if (sessionStartLimit(now).remaining <= 0) return "session start limit exhausted"
    identifyBuckets.set(bucket, now + config.identifyWindowMillis)
    startLimit.remaining--
    return undefined
  }

  return {
    config,
    rest,
    entries,
    conns,
    sessions,
    record,
    awaitEntry,
    newConn,
    newSession,
    isResumable,
    enqueue,
    send,
    dispatch,
    endSession,
    detach,
    close,
    drop,
    sessionStartLimit,
    takeIdentifyTurn,
    publicUrl: () => publicUrl,
    recommendedShards: () => recommendedShards,
    setRecommendedShards: (count: number) => {
      recommendedShards = Math.max(1, Math.floor(count))
    },
    setMaxGuildsPerShard: (max: number | undefined) => {
      maxGuildsPerShard = max
    },
    shardingRequired,
    setPublicUrl: (url: string) => {
      publicUrl = url.replace(/\/+$/, "")
    },
  }
}

export type State = ReturnType<typeof make>

export const openConns = (state: State): ReadonlyArray<Conn> =>
  [...state.conns.values()].filter((conn) => conn.state === "open")

/**
 * Takes the socket's bytes away from `ws` and discards them: no frame is parsed and nothing
 * is answered (not even a close or a ping), yet a FIN from the client still ends the socket.
 */
export const silence = (conn: Conn) => {
  conn.halfOpen = true
  conn.socket.removeAllListeners("data")
  conn.socket.on("data", () => {})
}

/** Any `token` field, wherever it sits, is replaced before a payload is recorded. */
export const redact = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(redact)
  if (value === null || typeof value !== "object") return value
  const out: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) out[key] = key === "token" ? "<redacted>" : redact(field)
  return out
}
