/**
 * A compression bomb over a real socket: a minimal gateway on 127.0.0.1 compresses for
 * real (one context per connection) and, right after READY, sends one small frame that
 * inflates to 16 MiB of `{}`. The connection ends with a `DecodeError`, the heap stays
 * bounded, and the shard resumes on a new connection with a new codec.
 */
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, type Protocol, Shard } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import { Effect, Layer, Redacted, Stream, SubscriptionRef } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import { heldBytes } from "./compressed.ts"

type Kind = "zlib-stream" | "zstd-stream"

const token = "bomb-test-token"
const env = Layer.merge(NodeGateway.layer(), IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }))
const bomb = Buffer.alloc(16 * 1024 * 1024, "{}")

const dispatch = (s: number, t: string, d: unknown) => JSON.stringify({ op: 0, s, t, d })

/** Hello; READY then the bomb on Identify; RESUMED then one MESSAGE_CREATE on Resume. */
const bombServer = (kind: Kind) =>
  Effect.acquireRelease(
    Effect.callback<{ wss: WebSocketServer; url: string; log: { identifies: number; resumes: number } }>(
      (resume) => {
        const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 })
        const log = { identifies: 0, resumes: 0 }
        wss.on("connection", (ws: WebSocket) => {
          const stream = kind === "zlib-stream" ? zlib.createDeflate() : zlib.createZstdCompress()
          const flush = kind === "zlib-stream" ? zlib.constants.Z_SYNC_FLUSH : zlib.constants.ZSTD_e_flush
          let pending: Array<Buffer> = []
          stream.on("data", (chunk: Buffer) => pending.push(chunk))
          ws.on("close", () => stream.destroy())
          // One context for the connection, one flushed WebSocket message per gateway message.
          let queue = Promise.resolve()
          const send = (message: string | Buffer) => {
            queue = queue.then(
              () =>
                new Promise<void>((done) => {
                  stream.write(message)
                  stream.flush(flush, () => {
                    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat(pending))
                    pending = []
                    done()
                  })
                }),
            )
          }
          send(JSON.stringify({ op: 10, d: { heartbeat_interval: 30_000 }, s: null, t: null }))
          ws.on("message", (raw) => {
            const { op } = JSON.parse(raw.toString()) as { op: number }
            if (op === 1) send(JSON.stringify({ op: 11, d: null, s: null, t: null }))
            if (op === 2) {
              log.identifies++
              send(
                dispatch(1, "READY", {
                  v: 10,
                  session_id: "bombed",
                  resume_gateway_url: url,
                  user: { id: "1", username: "u" },
                  guilds: [],
                }),
              )
              send(bomb)
            }
            if (op === 6) {
              log.resumes++
              send(dispatch(2, "RESUMED", null))
              send(dispatch(3, "MESSAGE_CREATE", { id: "3", content: "after the bomb" }))
            }
          })
        })
        let url = ""
        wss.on("listening", () => {
          url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`
          resume(Effect.succeed({ wss, url, log }))
        })
      },
    ),
    ({ wss }) =>
      Effect.callback<void>((resume) => {
        for (const client of wss.clients) client.terminate()
        wss.close(() => resume(Effect.void))
      }),
  )

describe("a compression bomb over a real socket", () => {
  it.live.each(["zstd-stream", "zlib-stream"] as const)(
    "%s: DecodeError, the heap bounded, then a resume on a new codec",
    (kind) =>
      Effect.gen(function* () {
        const server = yield* bombServer(kind)
        const before = heldBytes()
        const seen: Array<Protocol.Dispatch> = []
        const shard = yield* Shard.make({
          token: Redacted.make(token),
          intents: 513,
          shard: [0, 1],
          gatewayUrl: server.url,
          compression: kind,
          maxMessageBytes: 4 * 1024 * 1024,
        })
        yield* Effect.forkScoped(Stream.runForEach(shard.events, (e) => Effect.sync(() => void seen.push(e))))
        yield* eventually(
          () => seen.some((e) => e.type === "MESSAGE_CREATE"),
          "the event after the resume",
          "15 seconds",
        )
        assert.isBelow(heldBytes() - before, 64 * 1024 * 1024)
        assert.deepStrictEqual(
          seen.map((e) => e.type),
          ["READY", "RESUMED", "MESSAGE_CREATE"],
        )
        assert.deepStrictEqual(server.log, { identifies: 1, resumes: 1 })
        const status = yield* SubscriptionRef.get(shard.status)
        assert.strictEqual(status.lastError?.tag, "DecodeError")
      }).pipe(Effect.provide(env)),
  )
})
