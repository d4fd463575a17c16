/**
 * A fake Discord gateway on 127.0.0.1: a real `ws` server (on a Node HTTP server that also
 * answers `GET /gateway/bot`, and `GET /users/@me` and `POST /channels/{id}/messages`
 * through `FakeRest`'s handler: one fake Discord at one address, `httpUrl`) that speaks the protocol of
 * docs/protocol.md the way Discord does, and lets a test inject any fault at the moment it
 * chooses. Everything lives in the scope it was made in: when that closes, no server,
 * socket, fiber or timer is left.
 *
 * ```ts
 * const gateway = yield* FakeGateway.make({ token: "t", heartbeatInterval: 100 })
 * // point a client at gateway.connectUrl(), then:
 * yield* gateway.dispatch({ shard: 0 }, "MESSAGE_CREATE", Traffic.messageCreate(1))
 * yield* gateway.drop("latest")
 * const entries = yield* gateway.entries
 * Recording.identifyCount(entries)
 * ```
 */
import * as Http from "node:http"
import type { Duplex } from "node:stream"
import { clampInterval } from "@vigil/gateway/Heartbeat"
import { maxPayloadBytes, sendLimit } from "@vigil/gateway/Protocol"
import { Clock, Context, Deferred, Duration, Effect, FiberSet, Layer, Schema, type Scope } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import type * as FakeRest from "./FakeRest.ts"
import * as Connection from "./internal/Connection.ts"
import * as HttpApi from "./internal/Http.ts"
import { ListenError, listen } from "./internal/Listen.ts"
import * as State from "./internal/State.ts"
import { privilegedIntents } from "./internal/Validate.ts"
import * as Recording from "./Recording.ts"
import * as Traffic from "./Traffic.ts"

// ---------------------------------------------------------------------------
// Configuration

export interface Config {
  /** The bot token Identify and Resume must carry (else 4004) and `GET /gateway/bot` must be sent with. */
  readonly token: string
  /** Hello's `heartbeat_interval`. Default 41 250 ms, as Discord sends. */
  readonly heartbeatInterval?: Duration.Input | undefined
  /**
   * How late a heartbeat may be before the server closes the connection: it is due one
   * interval after the previous one (or after Hello), plus this grace. Default: half an interval
   * (intervals under 1 s: as if the interval were 1 s, the fastest a Vigil client beats).
   */
  readonly heartbeatGrace?: Duration.Input | undefined
  /** The close code for a connection whose heartbeats stopped. Default 4009; the session stays resumable. */
  readonly heartbeatTimeoutCode?: number | undefined
  /** Wait this long after the socket opens before sending Hello. Default 0. */
  readonly helloDelay?: Duration.Input | undefined
  /**
   * Ends every connection right after READY (and its GUILD_CREATEs) or RESUMED: with a close
   * code (1006: TCP destroyed without a close frame; 1005: a close frame without a code;
   * `linger`: the close frame goes but TCP stays open and silent that long), with op 7, or
   * with a frame that is not JSON. The hostile server that makes a naive client reconnect
   * as fast as the network allows. Default: connections live on.
   */
  readonly endAfterHandshake?:
    | { readonly close: number; readonly linger?: Duration.Input | undefined }
    | "reconnect"
    | "malformed"
    | undefined
  /** Identify and Resume are recorded but never answered; heartbeats are still ACKed. Default false. */
  readonly ignoreHandshake?: boolean | undefined
  /** The shard count `GET /gateway/bot` recommends. Default: one per 1000 guilds, at least 1. */
  readonly shards?: number | undefined
  /** Identifying with fewer shards closes with 4011. Default: one per 2500 guilds, at least 1. */
  readonly requiredShards?: number | undefined
  /**
   * Identifying a shard that would hold more of `guilds` than this closes with 4011, as
   * Discord does with a shard grown too big (see also `setMaxGuildsPerShard`). Default: no limit.
   */
  readonly maxGuildsPerShard?: number | undefined
  /** Identifies allowed per window, bucketed by `shard_id % maxConcurrency`. Default 1. */
  readonly maxConcurrency?: number | undefined
  /** The identify window. Default 5 s. */
  readonly identifyWindow?: Duration.Input | undefined
  /** The daily identify budget. Default 1000 of 1000, resetting in 24 h. */
  readonly sessionStartLimit?:
    | {
        readonly total?: number | undefined
        readonly remaining?: number | undefined
        readonly resetAfter?: Duration.Input | undefined
      }
    | undefined
  /**
   * The privileged intents enabled for this bot (GUILD_MEMBERS 1<<1, GUILD_PRESENCES 1<<8,
   * MESSAGE_CONTENT 1<<15); asking for another closes with 4014. Default: all three.
   */
  readonly allowedPrivilegedIntents?: number | undefined
  /** How long a session stays resumable after losing its connection. Default 3 minutes. */
  readonly resumeWindow?: Duration.Input | undefined
  /** Dispatches kept per session for Resume; resuming from before them closes with 4007. Default 10 000. */
  readonly replayLimit?: number | undefined
  /** Commands per window per connection; one more closes with 4008. Default 120 per 60 s. */
  readonly commandLimit?: { readonly commands: number; readonly window: Duration.Input } | undefined
  /** Largest payload a client may send (else 4002). Default 4096 bytes. */
  readonly maxPayloadBytes?: number | undefined
  /** zlib-stream: split each compressed message into WebSocket frames of at most this many bytes. */
  readonly zlibFrameBytes?: number | undefined
  /** The guilds the bot is in: READY lists each shard's own, then a GUILD_CREATE follows for each. */
  readonly guilds?: ReadonlyArray<string> | undefined
  readonly user?: { readonly id: string; readonly username: string } | undefined
  readonly applicationId?: string | undefined
  /** Request Guild Members (op 8). */
  readonly members?:
    | {
        /** Members each guild has (generated: `Traffic.member`). Default 0. */
        readonly perGuild?: number | undefined
        /** Members per GUILD_MEMBERS_CHUNK. Default 1000, as Discord. */
        readonly chunkSize?: number | undefined
        /** Requests per connection per window; over it, a RATE_LIMITED dispatch. Default: unlimited. */
        readonly requestLimit?: { readonly requests: number; readonly window: Duration.Input } | undefined
      }
    | undefined
  /** `POST /channels/{id}/messages` (served by `FakeRest`'s handler): its rate limits. */
  readonly rest?:
    | {
        /** Per channel. Default 5 per 5 s. */
        readonly messageLimit?: { readonly requests: number; readonly window: Duration.Input } | undefined
        /** Per bot, across routes. Default 50 per second. */
        readonly globalLimit?: { readonly requests: number; readonly window: Duration.Input } | undefined
        /** The bucket hash announced in `X-RateLimit-Bucket`. Default `"fake-messages"`. */
        readonly bucketHash?: string | undefined
      }
    | undefined
}

const limit = (
  value: { readonly requests: number; readonly window: Duration.Input } | undefined,
  requests: number,
  windowMillis: number,
) =>
  value
    ? { requests: value.requests, windowMillis: Duration.toMillis(value.window) }
    : { requests, windowMillis }

const millis = (input: Duration.Input | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(input)

const handshakeEnding = (ending: Config["endAfterHandshake"]): State.HandshakeEnding | undefined =>
  ending === undefined
    ? undefined
    : ending === "reconnect"
      ? { _tag: "Reconnect" }
      : ending === "malformed"
        ? { _tag: "Malformed" }
        : {
            _tag: "Close",
            code: ending.close,
            lingerMillis: ending.linger === undefined ? undefined : Duration.toMillis(ending.linger),
          }

const resolveConfig = (config: Config): State.ResolvedConfig => {
  const guilds = config.guilds ?? []
  const interval = millis(config.heartbeatInterval, 41_250)
  return {
    token: config.token,
    heartbeatIntervalMillis: interval,
    // Half an interval; for intervals under a second, measured from the 1 s a client beats
    // at the fastest (Vigil clamps shorter ones), so a client honouring its floor is not cut.
    heartbeatGraceMillis: millis(config.heartbeatGrace, Math.ceil(clampInterval(interval) * 1.5) - interval),
    heartbeatTimeoutCode: config.heartbeatTimeoutCode ?? 4009,
    helloDelayMillis: millis(config.helloDelay, 0),
    endAfterHandshake: handshakeEnding(config.endAfterHandshake),
    ignoreHandshake: config.ignoreHandshake ?? false,
    shards: config.shards ?? Math.max(1, Math.ceil(guilds.length / 1000)),
    requiredShards: config.requiredShards ?? Math.max(1, Math.ceil(guilds.length / 2500)),
    maxGuildsPerShard: config.maxGuildsPerShard,
    maxConcurrency: Math.max(1, config.maxConcurrency ?? 1),
    identifyWindowMillis: millis(config.identifyWindow, 5_000),
    sessionStartLimit: {
      total: config.sessionStartLimit?.total ?? 1000,
      remaining: config.sessionStartLimit?.remaining ?? config.sessionStartLimit?.total ?? 1000,
      resetAfterMillis: millis(config.sessionStartLimit?.resetAfter, 24 * 60 * 60 * 1000),
    },
    allowedPrivilegedIntents: config.allowedPrivilegedIntents ?? privilegedIntents,
    resumeWindowMillis: millis(config.resumeWindow, 3 * 60 * 1000),
    replayLimit: config.replayLimit ?? 10_000,
    commandLimit: config.commandLimit
      ? {
          commands: config.commandLimit.commands,
          windowMillis: Duration.toMillis(config.commandLimit.window),
        }
      : { commands: sendLimit.commands, windowMillis: sendLimit.windowMillis },
    maxPayloadBytes: config.maxPayloadBytes ?? maxPayloadBytes,
    zlibFrameBytes: config.zlibFrameBytes,
    guilds,
    user: config.user ?? { id: "1000000000000000001", username: "vigil-fake-bot" },
    applicationId: config.applicationId ?? config.user?.id ?? "1000000000000000001",
    members: {
      perGuild: config.members?.perGuild ?? 0,
      chunkSize: config.members?.chunkSize ?? 1000,
      requestLimit: config.members?.requestLimit ? limit(config.members.requestLimit, 0, 0) : undefined,
    },
    rest: {
      bucket: config.rest?.messageLimit,
      global: config.rest?.globalLimit,
      bucketHash: config.rest?.bucketHash,
    },
  }
}

// ---------------------------------------------------------------------------
// Errors

export { ListenError }

/** A control call named connections or sessions that do not exist (or are gone). */
export class NoTarget extends Schema.TaggedError<NoTarget>()("NoTarget", {
  target: Schema.String,
  what: Schema.Literals(["connection", "session"]),
}) {
  override get message() {
    return `FakeGateway: no open ${this.what} matches ${this.target}`
  }
}

/** A close code a WebSocket close frame cannot carry (use `drop` for 1006). */
export class InvalidCloseCode extends Schema.TaggedError<InvalidCloseCode>()("InvalidCloseCode", {
  code: Schema.Number,
}) {
  override get message() {
    return `${this.code} cannot be sent in a close frame (valid: 1000–1003, 1007–1014, 3000–4999)`
  }
}

/** `awaitEntry` waited in vain; `recent` is the tail of the recording, for the failure message. */
export class AwaitTimeout extends Schema.TaggedError<AwaitTimeout>()("AwaitTimeout", {
  waitedMillis: Schema.Number,
  recent: Schema.String,
}) {
  override get message() {
    return `FakeGateway: the awaited entry did not come within ${this.waitedMillis} ms; last entries:\n${this.recent}`
  }
}

// ---------------------------------------------------------------------------
// The service

/**
 * Which connections (for faults) or sessions (for dispatches) a call acts on:
 * - `"all"`: every open connection / every live session;
 * - `"latest"`: the newest open connection / the newest live session;
 * - `{ connection }`, `{ session }`: that one;
 * - `{ shard }`: the open connections of that shard / the newest live session of that shard.
 */
export type Target =
  | "all"
  | "latest"
  | { readonly connection: number }
  | { readonly session: string }
  | { readonly shard: number }

export type PostedMessage = FakeRest.PostedMessage

export interface ConnectionInfo {
  readonly id: number
  readonly path: string
  readonly state: "open" | "closing" | "closed"
  readonly compression: "zlib-stream" | "zstd-stream" | undefined
  readonly shard: readonly [number, number] | undefined
  readonly session: string | undefined
  readonly authenticated: boolean
  readonly halfOpen: boolean
  readonly acks: "on" | "off" | { readonly delayMillis: number }
}

export interface SessionInfo {
  readonly id: string
  readonly shard: readonly [number, number]
  /** The last sequence number sent (or queued) on this session. */
  readonly seq: number
  readonly connection: number | undefined
  readonly resumable: boolean
  /** Why the session cannot be resumed, if it cannot. */
  readonly ended: string | undefined
  readonly buffered: number
}

export interface EmitOptions {
  readonly count: number
  /** Events per second; omitted, they go as fast as they are produced. */
  readonly perSecond?: number | undefined
  /** Default `MESSAGE_CREATE`. */
  readonly type?: string | undefined
  /** The `d` of event `i` (from 0). Default: `Traffic.messageCreate(i)`. */
  readonly data?: ((i: number) => unknown) | undefined
}

export interface RestartOptions {
  /** Keep the sessions (resumable after the restart) or lose them. Default `"keep"`. */
  readonly sessions?: "keep" | "drop" | undefined
  /** How long the port stays closed (connections are refused) before listening again. Default 0. */
  readonly downtime?: Duration.Input | undefined
}

export interface CloseOptions {
  readonly reason?: string | undefined
  /**
   * Send the close frame but keep TCP open this long, reading nothing and answering nothing
   * (the client's close reply included), then destroy it: the code arrives, no TCP close follows.
   */
  readonly linger?: Duration.Input | undefined
  /**
   * Whether the session ends (a later Resume gets Invalid Session). Default: it ends when
   * the code means "start a new session" in the close code table (1000, 1001, 4003–4014
   * except 4000–4002), so the fake agrees with what a client does with the code.
   */
  readonly invalidate?: boolean | undefined
}

export interface FakeGatewayService {
  readonly port: number
  /** `ws://127.0.0.1:<port>`: the gateway's base URL (what `GET /gateway/bot` returns by default). */
  readonly url: string
  /** `http://127.0.0.1:<port>`: the REST base for `GET /gateway/bot`. */
  readonly httpUrl: string
  /** The URL to connect to: `?v=10&encoding=json`, plus `compress` if given. */
  readonly connectUrl: (options?: {
    readonly v?: number | undefined
    readonly encoding?: string | undefined
    readonly compress?: "zlib-stream" | "zstd-stream" | undefined
  }) => string
  /**
   * The base URL the server hands out (in `GET /gateway/bot` and READY's
   * `resume_gateway_url`, which is this plus `/resume`), e.g. a `TcpProxy` in front of it.
   */
  readonly advertise: (baseUrl: string) => Effect.Effect<void>

  // Traffic ---------------------------------------------------------------

  /** Sends a dispatch on each targeted session (buffered for Resume when it has no connection); returns the sequence numbers. */
  readonly dispatch: (
    target: Target,
    type: string,
    data: unknown,
  ) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /**
   * Sends a dispatch to every live session holding the guild, `(guild_id >> 22) % count ===
   * shard_id`: the newest such session of each shard count, so while sessions of two counts
   * run at once (a reshard) each receives it, as Discord does. Returns the sequence numbers.
   */
  readonly dispatchToGuild: (
    guildId: string,
    type: string,
    data: unknown,
  ) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Sends `count` dispatches, at `perSecond` if given; each goes to whatever session `target` names at that moment. */
  readonly emit: (target: Target, options: EmitOptions) => Effect.Effect<ReadonlyArray<number>, NoTarget>

  // Faults (each recorded; each returns the ids of the connections it acted on) ----

  /** Heartbeats go unanswered from now on. */
  readonly stopAcks: (target: Target) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Each heartbeat is answered `delay` late. */
  readonly delayAcks: (
    target: Target,
    delay: Duration.Input,
  ) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Heartbeats are answered at once again. */
  readonly resumeAcks: (target: Target) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Sends op 1: the client must heartbeat at once. */
  readonly requestHeartbeat: (target: Target) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Sends op 7. */
  readonly reconnect: (target: Target) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Sends `count` op 1 (heartbeat request) or op 7 (reconnect) payloads back to back: a storm. */
  readonly flood: (target: Target, op: 1 | 7, count: number) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /**
   * Sends one message of `count` copies of `message` (default `{}`) in one compressed flush,
   * on the connection's transport compression (zlib-stream, zstd-stream; uncompressed, one
   * text frame): a few KiB on the wire that decompress to `count × message` bytes. Recorded
   * as sent with op -1.
   */
  readonly bomb: (
    target: Target,
    options: { readonly count: number; readonly message?: string | undefined },
  ) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /**
   * Sends op 9 with `d: resumable`. The connection is unauthenticated again (it may
   * Identify or Resume anew); with `false` the session also ends.
   */
  readonly invalidSession: (
    target: Target,
    resumable: boolean,
  ) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Closes with a close frame. */
  readonly close: (
    target: Target,
    code: number,
    options?: CloseOptions,
  ) => Effect.Effect<ReadonlyArray<number>, NoTarget | InvalidCloseCode>
  /** Destroys the TCP connection: no close frame (the client sees 1006). The session stays resumable. */
  readonly drop: (target: Target) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /**
   * Goes half-open: the TCP connection stays up, but the server reads nothing more, answers
   * nothing (not even a close frame) and sends nothing; its own heartbeat timeout stops too.
   */
  readonly halfOpen: (target: Target) => Effect.Effect<ReadonlyArray<number>, NoTarget>
  /** Ends sessions without touching their connections: a later Resume gets Invalid Session (false). */
  readonly invalidate: (target: Target) => Effect.Effect<ReadonlyArray<string>, NoTarget>
  /**
   * Stops the server (every socket dropped, as when a process dies) and listens again on the
   * same port, with the sessions kept or lost.
   */
  readonly restart: (options?: RestartOptions) => Effect.Effect<void, ListenError>
  /** The first half of `restart`: every socket dropped, the port closed (connections refused) until `start`. */
  readonly stop: (options?: { readonly sessions?: "keep" | "drop" | undefined }) => Effect.Effect<void>
  /** Listens again on the same port; does nothing if it is listening. */
  readonly start: Effect.Effect<void, ListenError>

  // REST ------------------------------------------------------------------

  /** Messages accepted by `POST /channels/{id}/messages`, oldest first. */
  readonly messages: Effect.Effect<ReadonlyArray<PostedMessage>>
  /**
   * The next `count` (default 1) message posts (to `channelId`, or any) get this answer
   * instead: a 429 (with `retryAfter`, default 1 s, and `global`) or any other status, e.g.
   * 500 or 503. Recorded as a `fail-posts` fault.
   */
  readonly failPosts: (options: FakeRest.FailOptions) => Effect.Effect<void>
  /** Every request the REST routes other than `/gateway` and `/gateway/bot` saw, oldest first. */
  readonly restRequests: Effect.Effect<ReadonlyArray<FakeRest.RequestRecord>>

  // What the server saw ---------------------------------------------------

  /** The recording so far (see `Recording` for queries over it). */
  readonly entries: Effect.Effect<ReadonlyArray<Recording.Entry>>
  /** The first entry, already recorded or still to come, that passes `test`. Default timeout 10 s. */
  readonly awaitEntry: <E extends Recording.Entry = Recording.Entry>(
    test: ((entry: Recording.Entry) => entry is E) | ((entry: Recording.Entry) => boolean),
    options?: { readonly timeout?: Duration.Input | undefined },
  ) => Effect.Effect<E, AwaitTimeout>
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  readonly sessions: Effect.Effect<ReadonlyArray<SessionInfo>>
  /** WebSocket clients the server holds right now (`ws`'s own count). */
  readonly openSockets: Effect.Effect<number>
  /** From now on `GET /gateway/bot` recommends `count` shards (a growing bot). */
  readonly setRecommendedShards: (count: number) => Effect.Effect<void>
  /**
   * From now on a shard holding more than `max` guilds is refused with 4011 at Identify
   * (`undefined`: no limit). With `enforce`, every open session over it is closed with 4011
   * now (its session ended), as when a shard grows past the limit. Returns the closed connections.
   */
  readonly setMaxGuildsPerShard: (
    max: number | undefined,
    options?: { readonly enforce?: boolean | undefined },
  ) => Effect.Effect<ReadonlyArray<number>>
  /** What `GET /gateway/bot` would report now. */
  readonly sessionStartLimit: Effect.Effect<{
    readonly total: number
    readonly remaining: number
    readonly reset_after: number
    readonly max_concurrency: number
  }>
}

export class FakeGateway extends Context.Service<FakeGateway, FakeGatewayService>()(
  "@vigil/testing/FakeGateway",
) {
  static readonly layer = (config: Config): Layer.Layer<FakeGateway, ListenError> => layer(config)
}

const describeTarget = (target: Target): string =>
  typeof target === "string" ? target : JSON.stringify(target)

const isValidCloseCode = (code: number): boolean =>
  Number.isInteger(code) &&
  ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999))

const toBuffer = (data: Buffer | ArrayBuffer | ReadonlyArray<Buffer>): Buffer =>
  Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)

/** Stops accepting, and waits until every HTTP connection (keep-alive ones included) is gone. */
const stopListening = (server: Http.Server): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (!server.listening) return resume(Effect.void)
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
  })

export const make = (config: Config): Effect.Effect<FakeGatewayService, ListenError, Scope.Scope> =>
  Effect.gen(function* () {
    const resolved = resolveConfig(config)
    const state = State.make(resolved, yield* Clock.currentTimeMillis)
    const runFork = yield* FiberSet.makeRuntime<never>()
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: 16 * 1024 * 1024,
    })
    const upgraded = new Set<Duplex>()

    const onConnection = (ws: WebSocket, socket: Duplex, path: string) => {
      const conn = state.newConn(ws, socket, path)
      // Wired synchronously: nothing the client sends before the connection's fiber runs is lost.
      ws.on("message", (data: Buffer | ArrayBuffer | Array<Buffer>) =>
        conn.inbox.push({ _tag: "Message", data: toBuffer(data) }),
      )
      ws.on("close", (code: number, reason: Buffer) => {
        conn.inbox.push({ _tag: "Close", code, reason: reason.toString("utf8") })
        conn.inbox.close()
      })
      ws.on("error", () => {})
      runFork(Connection.run(state, conn, new URL(path, "http://fake").searchParams))
    }

    const server = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const server = Http.createServer((req, res) => {
          runFork(HttpApi.handle(state, req, res))
        })
        server.on("upgrade", (req: Http.IncomingMessage, socket: Duplex, head: Buffer) => {
          // A client resetting mid-handshake must not crash the process.
          socket.on("error", () => {})
          upgraded.add(socket)
          socket.once("close", () => upgraded.delete(socket))
          wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, socket, req.url ?? "/"))
        })
        return server
      }),
      (server) =>
        Effect.gen(function* () {
          // Control calls made after this point find nothing to act on (NoTarget).
          for (const session of state.sessions.values()) state.endSession(session, "the gateway shut down")
          for (const socket of upgraded) socket.destroy()
          for (const client of wss.clients) client.terminate()
          yield* stopListening(server)
          yield* Effect.callback<void>((resume) => {
            wss.close(() => resume(Effect.void))
          })
        }),
    )
    const port = yield* listen(server, "FakeGateway", 0)
    const url = `ws://127.0.0.1:${port}`
    state.setPublicUrl(url)

    // Target resolution -----------------------------------------------------

    const connectionsOf = (target: Target): Effect.Effect<ReadonlyArray<State.Conn>, NoTarget> =>
      Effect.suspend(() => {
        const open = State.openConns(state)
        const found =
          target === "all"
            ? open
            : target === "latest"
              ? open.slice(-1)
              : "connection" in target
                ? open.filter((conn) => conn.id === target.connection)
                : "session" in target
                  ? open.filter((conn) => conn.session?.id === target.session)
                  : open.filter((conn) => conn.shard?.[0] === target.shard)
        return found.length > 0
          ? Effect.succeed(found)
          : Effect.fail(new NoTarget({ target: describeTarget(target), what: "connection" }))
      })

    const sessionsOf = (target: Target): Effect.Effect<ReadonlyArray<State.Session>, NoTarget> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const live = [...state.sessions.values()].filter((session) => state.isResumable(session, now))
        const found =
          target === "all"
            ? live
            : target === "latest"
              ? live.slice(-1)
              : "session" in target
                ? live.filter((session) => session.id === target.session)
                : "connection" in target
                  ? live.filter((session) => session.connection?.id === target.connection)
                  : live.filter((session) => session.shard[0] === target.shard).slice(-1)
        return found.length > 0
          ? Effect.succeed(found)
          : Effect.fail(new NoTarget({ target: describeTarget(target), what: "session" }))
      })

    /**
     * Applies a fault to the targeted connections, records it, and returns once whatever it
     * queued for the wire has been written: the fault has happened when the call returns.
     */
    const fault = (
      target: Target,
      name: string,
      detail: string,
      apply: (conn: State.Conn, written: Deferred.Deferred<void>) => boolean,
    ): Effect.Effect<ReadonlyArray<number>, NoTarget> =>
      Effect.gen(function* () {
        const conns = yield* connectionsOf(target)
        const pending: Array<Deferred.Deferred<void>> = []
        for (const conn of conns) {
          yield* state.record({ _tag: "Fault", connection: conn.id, fault: name, detail })
          const written = Deferred.makeUnsafe<void>()
          if (apply(conn, written)) pending.push(written)
        }
        for (const written of pending) yield* Deferred.await(written)
        return conns.map((conn) => conn.id)
      })

    const sendOn = (
      conn: State.Conn,
      payload: { op: number; d: unknown },
      written: Deferred.Deferred<void>,
    ) => {
      state.send(conn, payload, written)
      return true
    }

    const dispatchOn = (session: State.Session, type: string, data: unknown) =>
      Effect.gen(function* () {
        const written = Deferred.makeUnsafe<void>()
        const seq = state.dispatch(session, type, data, written)
        yield* Deferred.await(written)
        return seq
      })

    const dispatch = (target: Target, type: string, data: unknown) =>
      Effect.flatMap(sessionsOf(target), (sessions) =>
        Effect.forEach(sessions, (s) => dispatchOn(s, type, data)),
      )

    const dispatchToGuild = (guildId: string, type: string, data: unknown) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        // The newest live session of each shard count that holds the guild.
        const byCount = new Map<number, State.Session>()
        for (const s of state.sessions.values()) {
          if (state.isResumable(s, now) && Traffic.shardOf(guildId, s.shard[1]) === s.shard[0])
            byCount.set(s.shard[1], s)
        }
        if (byCount.size === 0) return yield* new NoTarget({ target: `guild ${guildId}`, what: "session" })
        // Queued on every session before any write is awaited: the copies leave together.
        const written = [...byCount.values()].map((session) => {
          const done = Deferred.makeUnsafe<void>()
          return { seq: state.dispatch(session, type, data, done), done }
        })
        for (const w of written) yield* Deferred.await(w.done)
        return written.map((w) => w.seq)
      })

    const emit = (target: Target, options: EmitOptions) =>
      Effect.gen(function* () {
        const seqs: Array<number> = []
        const type = options.type ?? "MESSAGE_CREATE"
        const data = options.data ?? ((i: number) => Traffic.messageCreate(i))
        for (let i = 0; i < options.count; i++) {
          if (i > 0 && options.perSecond !== undefined) yield* Effect.sleep(1000 / options.perSecond)
          seqs.push(...(yield* dispatch(target, type, data(i))))
        }
        return seqs as ReadonlyArray<number>
      })

    const stop = (options: { readonly sessions?: "keep" | "drop" | undefined } = {}) =>
      Effect.gen(function* () {
        const keep = (options.sessions ?? "keep") === "keep"
        yield* state.record({
          _tag: "Fault",
          connection: undefined,
          fault: "stop",
          detail: `server down, sessions ${keep ? "kept" : "lost"}`,
        })
        const open = [...state.conns.values()].filter((conn) => conn.state !== "closed")
        for (const conn of open) state.drop(conn, "server stopped")
        // Sockets still in their upgrade handshake go too.
        for (const socket of upgraded) socket.destroy()
        yield* stopListening(server)
        for (const conn of open) yield* Deferred.await(conn.closed)
        if (!keep) {
          for (const session of state.sessions.values()) state.endSession(session, "lost in a server restart")
        }
      })

    const start = Effect.gen(function* () {
      if (server.listening) return
      yield* listen(server, "FakeGateway", port)
      yield* state.record({
        _tag: "Fault",
        connection: undefined,
        fault: "start",
        detail: `listening on ${port}`,
      })
    })

    const restart = (options: RestartOptions = {}) =>
      Effect.gen(function* () {
        yield* stop(options)
        const downtime = millis(options.downtime, 0)
        if (downtime > 0) yield* Effect.sleep(downtime)
        yield* start
      })

    const awaitEntry = <E extends Recording.Entry>(
      test: ((entry: Recording.Entry) => entry is E) | ((entry: Recording.Entry) => boolean),
      options?: { readonly timeout?: Duration.Input | undefined },
    ): Effect.Effect<E, AwaitTimeout> => {
      const timeout = millis(options?.timeout, 10_000)
      return state.awaitEntry(test).pipe(
        Effect.map((entry) => entry as E),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              new AwaitTimeout({ waitedMillis: timeout, recent: Recording.format(state.entries.slice(-25)) }),
            ),
        }),
      )
    }

    const service: FakeGatewayService = {
      port,
      url,
      httpUrl: `http://127.0.0.1:${port}`,
      connectUrl: (options = {}) => {
        const search = new URLSearchParams({
          v: String(options.v ?? 10),
          encoding: options.encoding ?? "json",
        })
        if (options.compress !== undefined) search.set("compress", options.compress)
        return `${url}/?${search}`
      },
      advertise: (baseUrl) => Effect.sync(() => state.setPublicUrl(baseUrl)),

      dispatch,
      dispatchToGuild,
      emit,

      stopAcks: (target) =>
        fault(target, "stop-acks", "heartbeats go unanswered", (conn) => {
          conn.acks = "off"
          return false
        }),
      delayAcks: (target, delay) => {
        const delayMillis = Duration.toMillis(delay)
        return fault(target, "delay-acks", `ACKs ${delayMillis} ms late`, (conn) => {
          conn.acks = { delayMillis }
          return false
        })
      },
      resumeAcks: (target) =>
        fault(target, "resume-acks", "heartbeats answered again", (conn) => {
          conn.acks = "on"
          return false
        }),
      requestHeartbeat: (target) =>
        fault(target, "request-heartbeat", "op 1", (conn, written) =>
          sendOn(conn, { op: 1, d: null }, written),
        ),
      reconnect: (target) =>
        fault(target, "reconnect", "op 7", (conn, written) => sendOn(conn, { op: 7, d: null }, written)),
      flood: (target, op, count) =>
        fault(target, "flood", `${count} × op ${op}`, (conn, written) => {
          for (let i = 1; i < count; i++) state.send(conn, { op, d: null })
          return sendOn(conn, { op, d: null }, written)
        }),
      bomb: (target, options) => {
        const message = options.message ?? "{}"
        return fault(target, "bomb", `${options.count} × ${message}`, (conn, written) => {
          state.enqueue(conn, {
            _tag: "Payload",
            text: message,
            op: -1,
            t: null,
            s: null,
            repeat: options.count,
            written,
          })
          return true
        })
      },
      invalidSession: (target, resumable) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          return yield* fault(target, "invalid-session", `op 9, d: ${resumable}`, (conn, written) => {
            const session = conn.session
            if (session !== undefined) {
              state.detach(conn, now)
              if (!resumable) state.endSession(session, "invalid session sent by the test")
            }
            conn.auth = "none"
            conn.session = undefined
            return sendOn(conn, { op: 9, d: resumable }, written)
          })
        }),
      close: (target, code, options = {}) =>
        isValidCloseCode(code)
          ? fault(target, "close", `close ${code}`, (conn, written) => {
              state.close(conn, code, options.reason ?? "", {
                invalidate: options.invalidate,
                lingerMillis: options.linger === undefined ? undefined : Duration.toMillis(options.linger),
                written,
              })
              return true
            })
          : Effect.fail(new InvalidCloseCode({ code })),
      drop: (target) =>
        fault(target, "drop", "TCP connection destroyed, no close frame", (conn) => {
          state.drop(conn, "dropped by the test")
          return false
        }),
      halfOpen: (target) =>
        fault(target, "half-open", "TCP open, nothing read or sent", (conn) => {
          State.silence(conn)
          return false
        }),
      invalidate: (target) =>
        Effect.gen(function* () {
          const sessions = yield* sessionsOf(target)
          for (const session of sessions) {
            yield* state.record({
              _tag: "Fault",
              connection: session.connection?.id,
              fault: "invalidate",
              detail: `session ${session.id} can no longer be resumed`,
            })
            state.endSession(session, "invalidated by the test")
          }
          return sessions.map((session) => session.id)
        }),
      restart,
      stop,
      start,

      messages: state.rest.messages,
      failPosts: (options) =>
        Effect.andThen(
          state.record({
            _tag: "Fault",
            connection: undefined,
            fault: "fail-posts",
            detail: `next ${options.count ?? 1} message post(s)${
              options.channelId === undefined ? "" : ` to channel ${options.channelId}`
            } answered ${options.status}`,
          }),
          state.rest.failNext(options),
        ),
      restRequests: state.rest.requests,

      entries: Effect.sync(() => state.entries.slice()),
      awaitEntry,
      connections: Effect.sync(() =>
        [...state.conns.values()].map(
          (conn): ConnectionInfo => ({
            id: conn.id,
            path: conn.path,
            state: conn.state,
            compression: conn.compression,
            shard: conn.shard,
            session: conn.session?.id,
            authenticated: conn.auth !== "none",
            halfOpen: conn.halfOpen,
            acks: conn.acks,
          }),
        ),
      ),
      sessions: Effect.map(Clock.currentTimeMillis, (now) =>
        [...state.sessions.values()].map(
          (session): SessionInfo => ({
            id: session.id,
            shard: session.shard,
            seq: session.seq,
            connection: session.connection?.id,
            resumable: state.isResumable(session, now),
            ended: session.ended,
            buffered: session.buffer.length,
          }),
        ),
      ),
      openSockets: Effect.sync(() => wss.clients.size),
      sessionStartLimit: Effect.map(Clock.currentTimeMillis, (now) => state.sessionStartLimit(now)),
      setRecommendedShards: (count) =>
        Effect.andThen(
          state.record({
            _tag: "Fault",
            connection: undefined,
            fault: "recommend-shards",
            detail: `GET /gateway/bot recommends ${count} shards`,
          }),
          Effect.sync(() => state.setRecommendedShards(count)),
        ),
      setMaxGuildsPerShard: (max, options = {}) =>
        Effect.gen(function* () {
          state.setMaxGuildsPerShard(max)
          yield* state.record({
            _tag: "Fault",
            connection: undefined,
            fault: "max-guilds-per-shard",
            detail: max === undefined ? "no limit" : `at most ${max} guilds per shard`,
          })
          if (!options.enforce) return []
          const over = State.openConns(state).filter(
            (conn) => conn.shard !== undefined && conn.auth !== "none" && state.shardingRequired(conn.shard),
          )
          return yield* Effect.forEach(over, (conn) =>
            Effect.gen(function* () {
              const written = Deferred.makeUnsafe<void>()
              yield* state.record({
                _tag: "Fault",
                connection: conn.id,
                fault: "close",
                detail: "close 4011",
              })
              state.close(conn, 4011, state.shardingRequired(conn.shard!) ?? "sharding required", { written })
              yield* Deferred.await(written)
              return conn.id
            }),
          )
        }),
    }
    return service
  })

export const layer = (config: Config): Layer.Layer<FakeGateway, ListenError> =>
  Layer.effect(FakeGateway)(make(config))
