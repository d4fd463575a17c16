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
 * Parent protocol (IPC): receives `{ count, latencyEvents, latencyRate }` as argv JSON,
 * answers `{ port }` once listening.
 */
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
}

const config = JSON.parse(process.argv[2] ?? "{}") as GeneratorConfig

/** Long enough that no client heartbeats in a run; ACKs are answered all the same. */
const heartbeatInterval = 600_000

const hello = JSON.stringify({ op: 10, d: { heartbeat_interval: heartbeatInterval }, s: null, t: null })
const ack = JSON.stringify({ op: 11, d: null, s: null, t: null })
const readyText = (port: number) =>
  payloadText(
    {
      t: "READY",
      d: {
        v: 10,
        session_id: "bench-session",
        resume_gateway_url: `ws://127.0.0.1:${port}`,
        user: { id: "1", username: "bench", discriminator: "0", bot: true },
        guilds: [],
        shard: [0, 1],
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
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false })
  await new Promise<void>((resolve) => server.once("listening", () => resolve()))
  const port = (server.address() as { port: number }).port
  const texts = [hello, readyText(port), ...dispatches.map((d, i) => payloadText(d, i + 2))]
  const encoded: Record<Encoding, Frames> = {
    json: texts,
    "zlib-stream": await encodeStream("zlib-stream", texts),
    "zstd-stream": await encodeStream("zstd-stream", texts),
  }

  server.on("connection", (socket, request) => {
    const url = new URL(request.url ?? "/", "ws://127.0.0.1")
    const encoding = encodingOf(url)
    if (url.pathname.startsWith("/latency")) serveLatency(socket, encoding, port)
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

await main()
