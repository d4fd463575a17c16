/**
 * The clients the bench compares, each behind one small adapter: connect to the generator,
 * hand every dispatch to the consumer, close. An adapter runs alone in its own process
 * (ClientRunner.ts), so CPU time and memory are its own.
 *
 * Vigil's adapter lives in `Vigil.ts`. `startMany` runs many idle shards in this one process
 * (the idle memory and heartbeat CPU figures).
 */
import * as zlib from "node:zlib"
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from "@discordjs/ws"
import WebSocket from "ws"
import { vigil, vigilNoMetrics, vigilProvider } from "./Vigil.ts"
import { type Encoding, manyGatewayBot } from "./Workload.ts"

export interface BenchClientOptions {
  /** The generator's gateway URL without query (e.g. `ws://127.0.0.1:PORT/throughput`). */
  readonly url: string
  readonly encoding: Encoding
  readonly token: string
  /** The consumer: called once per dispatch (READY included), in order, as the app would see it. */
  readonly onDispatch: (type: string, data: unknown) => void
}

export interface BenchClientHandle {
  readonly close: () => Promise<void>
}

export interface BenchManyOptions {
  /** The generator's idle gateway URL without query (e.g. `ws://127.0.0.1:PORT/idle/41250`). */
  readonly url: string
  readonly token: string
  /** Shards 0…count-1 of `count`, all in this process, json, no compression. */
  readonly count: number
  /** Identify buckets (`max_concurrency`); the bench uses `count`, the same for every client. */
  readonly maxConcurrency: number
  /** Called once per shard when its READY arrives. */
  readonly onReady: (shardId: number) => void
}

export interface BenchClient {
  /** Short, stable: used on the command line and in the table. */
  readonly name: string
  readonly description: string
  readonly supports: (encoding: Encoding) => boolean
  readonly start: (options: BenchClientOptions) => Promise<BenchClientHandle>
  /** Many idle shards in this process; absent when the client has no notion of it. */
  readonly startMany?: (options: BenchManyOptions) => Promise<BenchClientHandle>
  /** Whether it detects a zombie connection and resumes (the zombie figure). */
  readonly heartbeats: boolean
}

/** The query a Discord client adds to the gateway URL. */
export const gatewayQuery = (encoding: Encoding) =>
  `?v=10&encoding=json${encoding === "json" ? "" : `&compress=${encoding}`}`

const endsWithSyncFlush = (b: Uint8Array) =>
  b.length >= 4 &&
  b[b.length - 4] === 0 &&
  b[b.length - 3] === 0 &&
  b[b.length - 2] === 0xff &&
  b[b.length - 1] === 0xff

/**
 * The floor: plain `ws`, `JSON.parse` and node:zlib's streams, no framework, no heartbeat
 * (runs are shorter than the interval): what the machine can do on this path.
 */
export const floor: BenchClient = {
  name: "floor",
  description: "plain ws + JSON.parse + node:zlib streams",
  supports: () => true,
  heartbeats: false,
  startMany: (options) => floorMany(options),
  start: (options) =>
    new Promise((resolve) => {
      const socket = new WebSocket(`${options.url}${gatewayQuery(options.encoding)}`, {
        perMessageDeflate: false,
      })
      const decoder = new TextDecoder()
      const handle = (text: string) => {
        const payload = JSON.parse(text) as { op: number; t: string | null; d: unknown }
        if (payload.op === 10) {
          socket.send(JSON.stringify({ op: 2, d: { token: options.token, intents: 0, properties: {} } }))
        } else if (payload.op === 0) options.onDispatch(payload.t as string, payload.d)
      }
      // Flushed on every write (as @discordjs/ws does): without it node:zlib holds the
      // output of a write back until its 64 KiB chunk fills or more input comes.
      const inflate =
        options.encoding === "zlib-stream"
          ? zlib.createInflate({ chunkSize: 64 * 1024, flush: zlib.constants.Z_SYNC_FLUSH })
          : options.encoding === "zstd-stream"
            ? zlib.createZstdDecompress({ chunkSize: 64 * 1024, flush: zlib.constants.ZSTD_e_flush })
            : undefined
      let pending: Array<Buffer> = []
      inflate?.on("data", (chunk: Buffer) => pending.push(chunk))
      socket.on("message", (data: Buffer, isBinary) => {
        if (!isBinary || !inflate) return handle(String(data))
        const complete = options.encoding === "zstd-stream" || endsWithSyncFlush(data)
        inflate.write(data, () => {
          if (!complete) return
          const out = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending)
          pending = []
          handle(decoder.decode(out))
        })
      })
      socket.once("open", () =>
        resolve({
          close: async () => {
            socket.terminate()
            inflate?.destroy()
          },
        }),
      )
    }),
}

/**
 * The floor's idle shard: a socket, Identify, and a plain `setInterval` heartbeat (no zombie
 * check, no session, no reconnect): about the least a connected shard can hold.
 */
const floorIdle = (options: BenchManyOptions, shardId: number) => {
  const socket = new WebSocket(`${options.url}${gatewayQuery("json")}`, { perMessageDeflate: false })
  let timer: ReturnType<typeof setInterval> | undefined
  let seq: number | null = null
  socket.on("message", (data: Buffer) => {
    const payload = JSON.parse(String(data)) as { op: number; t: string | null; s: number | null; d: unknown }
    if (payload.s !== null) seq = payload.s
    if (payload.op === 10) {
      const interval = (payload.d as { heartbeat_interval: number }).heartbeat_interval
      socket.send(
        JSON.stringify({
          op: 2,
          d: { token: options.token, intents: 0, shard: [shardId, options.count], properties: {} },
        }),
      )
      timer = setInterval(() => socket.send(JSON.stringify({ op: 1, d: seq })), interval)
    } else if (payload.op === 0 && payload.t === "READY") options.onReady(shardId)
  })
  return () => {
    clearInterval(timer)
    socket.terminate()
  }
}

export const floorMany = async (options: BenchManyOptions): Promise<BenchClientHandle> => {
  const closers = Array.from({ length: options.count }, (_, id) => floorIdle(options, id))
  return {
    close: async () => {
      for (const close of closers) close()
    },
  }
}

/** @discordjs/ws 2.x, pointed at the generator; 2.0.4 offers zlib (native) but no zstd. */
export const discordjs: BenchClient = {
  name: "@discordjs/ws",
  description: "@discordjs/ws 2.x WebSocketManager, native zlib",
  supports: (encoding) => encoding !== "zstd-stream",
  heartbeats: true,
  start: async (options) => {
    const manager = new WebSocketManager({
      token: options.token,
      intents: 0 as never,
      // A REST stub answering GET /gateway/bot with the generator: no other network, ever.
      rest: {
        get: async () => ({
          url: options.url,
          shards: 1,
          session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 },
        }),
      } as never,
      compression: options.encoding === "zlib-stream" ? CompressionMethod.ZlibNative : null,
    })
    manager.on(WebSocketShardEvents.Dispatch, (payload) => options.onDispatch(payload.t, payload.d))
    await manager.connect()
    return { close: async () => manager.destroy() }
  },
  startMany: async (options) => {
    const manager = new WebSocketManager({
      token: options.token,
      intents: 0 as never,
      shardCount: options.count,
      rest: {
        get: async () => manyGatewayBot(options),
      } as never,
    })
    manager.on(WebSocketShardEvents.Dispatch, (payload, shardId) => {
      if (payload.t === "READY") options.onReady(shardId)
    })
    await manager.connect()
    return { close: async () => manager.destroy() }
  },
}

/** Every client in the run, floor first. */
export const clients: ReadonlyArray<BenchClient> = [floor, discordjs, vigil, vigilProvider, vigilNoMetrics]
