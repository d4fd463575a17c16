/**
 * The load generator: a minimal gateway on 127.0.0.1 in its own process (forked by main.ts).
 *
 * Protocol, just enough for every client: Hello, Identify → READY, then the stream;
 * heartbeats are ACKed (as a text frame, which every client accepts, so that the
 * pre-encoded compressed stream stays byte-identical for everyone).
 *
 * - `/throughput?compress=…`: the pre-encoded workload (`count` dispatches, the same bytes
 *   for every client, encoded once at start-up), written as fast as the socket drains.
 * - `/latency?compress=…`: `latencyEvents` MESSAGE_CREATEs at `latencyRate`/s, each carrying
 *   its send time (`process.hrtime.bigint()`, a clock every process on the machine shares)
 *   in `nonce`; compressed live, on one context per connection, since each differs.
 *
 * - `/idle/<interval ms>`: Hello with that heartbeat interval, Identify → READY (a session per
 *   connection), every heartbeat ACKed and counted; nothing else. `GET /stats` on the same
 *   port answers `{ idleConnections, idleReady, idleHeartbeats }` (the CPU-per-beat figure).
 * - `/zombie/<interval ms>`: like idle, but after `zombieAcks` ACKs the server goes silent
 *   (a zombie: the socket is open, heartbeats are read, none is ACKed). A Resume for the
 *   session is answered with RESUMED and then a `BENCH_ZOMBIE` dispatch carrying, on the
 *   shared monotonic clock, when the last ACK went out, when the first unanswered heartbeat
 *   arrived, and when RESUMED went out; ACKs start again, and so on, `zombieTrials` times.
 *
 * Parent protocol (IPC): receives `{ count, latencyEvents, latencyRate }` as argv JSON,
 * answers `{ port }` once listening.
 */
import * as http from "node:http"
import { type WebSocket, WebSocketServer } from "ws"
import {
  type Dispatch,
  dispatchMix,
  type Encoding,
  encodeStream,
  makeCompressor,
  payloadText,
  type StreamCompressor,
} from "./Workload.ts"

export interface GeneratorConfig {
  readonly count: number
  readonly latencyEvents: number
  readonly latencyRate: number
  /** ACKs the zombie server gives (after READY and after each RESUMED) before it goes silent. */
  readonly zombieAcks: number
}

const config = JSON.parse(process.argv[2] ?? "{}") as GeneratorConfig

/** Long enough that no client heartbeats in a run; ACKs are answered all the same. */
const heartbeatInterval = 600_000

const hello = JSON.stringify({ op: 10, d: { heartbeat_interval: heartbeatInterval }, s: null, t: null })
const ack = JSON.stringify({ op: 11, d: null, s: null, t: null })
const helloWith = (heartbeatInterval: number) =>
  JSON.stringify({ op: 10, d: { heartbeat_interval: heartbeatInterval }, s: null, t: null })
const readyText = (
  port: number,
  session: { readonly id?: string; readonly resumePath?: string; readonly shard?: unknown } = {},
) =>
  payloadText(
    {
      t: "READY",
      d: {
        v: 10,
        session_id: session.id ?? "bench-session",
        resume_gateway_url: `ws://127.0.0.1:${port}${session.resumePath ?? ""}`,
        user: { id: "1", username: "bench", discriminator: "0", bot: true },
        guilds: [],
        shard: session.shard ?? [0, 1],
        application: { id: "1", flags: 0 },
      },
    },
    1,
  )

const encodingOf = (url: URL): Encoding => {
  const compress = url.searchParams.get("compress")
  return compress === "zlib-stream" || compress === "zstd-stream" ? compress : "json"
}

/** Frames for one stream: Hello, READY, then the dispatches (s = 2…). */
type Frames = ReadonlyArray<string | Uint8Array>

const main = async () => {
  const dispatches = dispatchMix(config.count)
  const httpServer = http.createServer((request, response) => {
    if (request.url === "/stats") {
      response.writeHead(200, { "content-type": "application/json" })
      response.end(JSON.stringify(stats))
    } else {
      response.writeHead(404)
      response.end()
    }
  })
  // A deep accept queue: a thousand shards may open their sockets in the same instant.
  await new Promise<void>((resolve) =>
    httpServer.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, resolve),
  )
  const server = new WebSocketServer({ server: httpServer, perMessageDeflate: false })
  const port = (httpServer.address() as { port: number }).port
  const texts = [hello, readyText(port), ...dispatches.map((d, i) => payloadText(d, i + 2))]
  const encoded: Record<Encoding, Frames> = {
    json: texts,
    "zlib-stream": await encodeStream("zlib-stream", texts),
    "zstd-stream": await encodeStream("zstd-stream", texts),
  }

  server.on("connection", (socket, request) => {
    const url = new URL(request.url ?? "/", "ws://127.0.0.1")
    const encoding = encodingOf(url)
    const [, kind, interval] = url.pathname.split("/")
    if (kind === "latency") serveLatency(socket, encoding, port)
    else if (kind === "idle") serveIdle(socket, port, Number(interval))
    else if (kind === "zombie") serveZombie(socket, port, Number(interval))
    else serveThroughput(socket, encoded[encoding])
  })
  process.send?.({ port, bytes: Object.fromEntries(Object.entries(encoded).map(([k, f]) => [k, size(f)])) })
  process.on("disconnect", () => process.exit(0))
}

const size = (frames: Frames) =>
  frames.reduce((n, f) => n + (typeof f === "string" ? Buffer.byteLength(f) : f.length), 0)

/** Runs `onOp` for each op the client sends (text or binary JSON). */
const onClientOp = (socket: WebSocket, onOp: (op: number) => void) =>
  socket.on("message", (data) => {
    const op = (JSON.parse(String(data)) as { op: number }).op
    if (op === 1) socket.send(ack)
    onOp(op)
  })

const send = (socket: WebSocket, frame: string | Uint8Array, done?: () => void) =>
  socket.send(frame, { binary: typeof frame !== "string" }, done ? () => done() : undefined)

const serveThroughput = (socket: WebSocket, frames: Frames) => {
  send(socket, frames[0] as string | Uint8Array)
  onClientOp(socket, (op) => {
    if (op !== 2) return
    send(socket, frames[1] as string | Uint8Array)
    // Write in batches, each after the previous one reached the kernel: the client's own
    // pace sets the rate, and nothing piles up in this process.
    let at = 2
    const batch = () => {
      if (socket.readyState !== socket.OPEN) return
      const end = Math.min(at + 256, frames.length)
      for (; at < end - 1; at++) send(socket, frames[at] as string | Uint8Array)
      if (at < frames.length) send(socket, frames[at++] as string | Uint8Array, batch)
    }
    batch()
  })
}

const serveLatency = (socket: WebSocket, encoding: Encoding, port: number) => {
  const compressor: StreamCompressor | undefined = encoding === "json" ? undefined : makeCompressor(encoding)
  let chain: Promise<void> = Promise.resolve()
  // Built at its turn, so that a stamp taken in `text()` does not count the queue before it.
  const sendText = (text: () => string) => {
    if (!compressor) return send(socket, text())
    chain = chain.then(async () => {
      const bytes = await compressor.push(text())
      if (socket.readyState === socket.OPEN) send(socket, bytes)
    })
  }
  socket.on("close", () => compressor?.close())
  sendText(() => hello)
  const template = dispatchMix(50, { seed: 7 }).find((d) => d.t === "MESSAGE_CREATE") as Dispatch
  onClientOp(socket, (op) => {
    if (op !== 2) return
    sendText(() => readyText(port))
    let sent = 0
    const perTick = Math.max(1, Math.round(config.latencyRate / 1000))
    const started = performance.now()
    // Paced by the clock: each tick sends what is due by now.
    const timer = setInterval(() => {
      const due = Math.min(
        config.latencyEvents,
        Math.floor(((performance.now() - started) * config.latencyRate) / 1000),
      )
      for (let i = 0; sent < due && i < perTick * 4; i++) {
        sent++
        const s = sent + 1
        sendText(() =>
          payloadText(
            { t: "MESSAGE_CREATE", d: { ...template.d, nonce: String(process.hrtime.bigint()) } },
            s,
          ),
        )
      }
      if (sent >= config.latencyEvents || socket.readyState !== socket.OPEN) clearInterval(timer)
    }, 1)
  })
}

const stats = { idleConnections: 0, idleReady: 0, idleHeartbeats: 0 }
let sessions = 0

const parseOp = (data: unknown) => JSON.parse(String(data)) as { op: number; d: unknown }

const serveIdle = (socket: WebSocket, port: number, interval: number) => {
  stats.idleConnections++
  socket.on("close", () => stats.idleConnections--)
  socket.send(helloWith(interval))
  socket.on("message", (data) => {
    const { op, d } = parseOp(data)
    if (op === 1) {
      stats.idleHeartbeats++
      socket.send(ack)
    } else if (op === 2) {
      stats.idleReady++
      const shard = (d as { shard?: unknown }).shard
      socket.send(readyText(port, { id: `idle-${++sessions}`, resumePath: `/idle/${interval}`, shard }))
    }
  })
}

interface ZombieSession {
  seq: number
  acksLeft: number
  lastAckAt: bigint
  unansweredAt: bigint | undefined
}
const zombies = new Map<string, ZombieSession>()

const serveZombie = (socket: WebSocket, port: number, interval: number) => {
  let session: ZombieSession | undefined
  socket.send(helloWith(interval))
  socket.on("message", (data) => {
    const { op, d } = parseOp(data)
    if (op === 1) {
      if (!session) return void socket.send(ack)
      if (session.acksLeft > 0) {
        session.acksLeft--
        socket.send(ack)
        session.lastAckAt = process.hrtime.bigint()
      } else {
        session.unansweredAt ??= process.hrtime.bigint()
      }
    } else if (op === 2) {
      const id = `zombie-${++sessions}`
      session = {
        seq: 1,
        acksLeft: config.zombieAcks,
        lastAckAt: process.hrtime.bigint(),
        unansweredAt: undefined,
      }
      zombies.set(id, session)
      socket.send(readyText(port, { id, resumePath: `/zombie/${interval}` }))
    } else if (op === 6) {
      const resume = d as { session_id: string }
      session = zombies.get(resume.session_id)
      if (!session) return void socket.send(JSON.stringify({ op: 9, d: false, s: null, t: null }))
      socket.send(payloadText({ t: "RESUMED", d: {} }, ++session.seq))
      const resumedAt = process.hrtime.bigint()
      socket.send(
        payloadText(
          {
            t: "BENCH_ZOMBIE",
            d: {
              lastAckAt: String(session.lastAckAt),
              unansweredAt: session.unansweredAt === undefined ? null : String(session.unansweredAt),
              resumedAt: String(resumedAt),
              intervalMillis: interval,
            },
          },
          ++session.seq,
        ),
      )
      session.acksLeft = config.zombieAcks
      session.unansweredAt = undefined
    }
  })
}

await main()
