/**
 * The clients the bench compares, each behind one small adapter: connect to the generator,
 * hand every dispatch to the consumer, close. An adapter runs alone in its own process
 * (ClientRunner.ts), so CPU time and memory are its own.
 *
 * ┌──────────────────────────────────────────────────────────────────────────────────────┐
 * │ VIGIL HOOK: Vigil's adapter goes into `clients` below (e.g. `src/clients/Vigil.ts`): │
 * │ run a Shard with NodeTransport.layer + NodeCompression.layer against `options.url`,  │
 * │ compression `options.encoding`, and call `onDispatch` from its event stream.         │
 * └──────────────────────────────────────────────────────────────────────────────────────┘
 */
import * as zlib from "node:zlib"
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from "@discordjs/ws"
import WebSocket from "ws"
import type { Encoding } from "./Workload.ts"

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

export interface BenchClient {
  /** Short, stable: used on the command line and in the table. */
  readonly name: string
  readonly description: string
  readonly supports: (encoding: Encoding) => boolean
  readonly start: (options: BenchClientOptions) => Promise<BenchClientHandle>
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
      const inflate =
        options.encoding === "zlib-stream"
          ? zlib.createInflate({ chunkSize: 64 * 1024 })
          : options.encoding === "zstd-stream"
            ? zlib.createZstdDecompress({ chunkSize: 64 * 1024 })
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

/** @discordjs/ws 2.x, pointed at the generator; 2.0.4 offers zlib (native) but no zstd. */
export const discordjs: BenchClient = {
  name: "@discordjs/ws",
  description: "@discordjs/ws 2.x WebSocketManager, native zlib",
  supports: (encoding) => encoding !== "zstd-stream",
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
}

/** Every client in the run, floor first. Add Vigil here (see the hook above). */
export const clients: ReadonlyArray<BenchClient> = [floor, discordjs]
