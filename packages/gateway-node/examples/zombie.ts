/**
 * A connection's whole life against a local gateway on 127.0.0.1: Hello, Identify, READY,
 * heartbeats and their ACKs — then the server stops answering, and the client detects the
 * zombie within one interval and reports it as a typed error (not a thrown invariant).
 *
 *   node packages/gateway-node/examples/zombie.ts
 */

import type { AddressInfo } from "node:net"
import { Connection, type GatewayError } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import { Console, Effect, Redacted } from "effect"
import { WebSocketServer } from "ws"

const interval = 500
const acksBeforeSilence = 3

/** A tiny gateway: Hello, READY on Identify, ACKs for the first few heartbeats only. */
const localGateway = Effect.acquireRelease(
  Effect.callback<WebSocketServer>((resume) => {
    const wss: WebSocketServer = new WebSocketServer({ host: "127.0.0.1", port: 0 })
    wss.on("listening", () => resume(Effect.succeed(wss)))
    wss.on("connection", (ws) => {
      let acks = 0
      ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: interval }, s: null, t: null }))
      ws.on("close", (code) => console.log(`  server  client closed the socket with ${code}`))
      ws.on("message", (raw) => {
        const msg = JSON.parse(raw.toString())
        if (msg.op === 2) {
          const d = {
            v: 10,
            session_id: "demo",
            resume_gateway_url: "ws://127.0.0.1",
            user: { id: "1", username: "vigil" },
            guilds: [],
          }
          ws.send(JSON.stringify({ op: 0, s: 1, t: "READY", d }))
        } else if (msg.op === 1) {
          if (acks++ < acksBeforeSilence) ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }))
          else console.log("  server  (ignoring the heartbeat: the link is now a zombie)")
        }
      })
    })
  }),
  (wss) => Effect.callback<void>((resume) => wss.close(() => resume(Effect.void))),
)

const program = Effect.gen(function* () {
  const wss = yield* localGateway
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`
  yield* Console.log(`local gateway on ${url}, heartbeat interval ${interval} ms`)

  const outcome = yield* Connection.run({
    url,
    token: Redacted.make("demo-token"),
    intents: 513,
    shard: [0, 1],
    handshake: { _tag: "identify" },
    onEvent: (event) => {
      switch (event._tag) {
        case "Hello":
          return Console.log(`  client  Hello: heartbeat every ${event.intervalMillis} ms`)
        case "Ready":
          return Console.log(
            `  client  READY as ${event.ready.user.username}, session ${event.ready.session_id}`,
          )
        case "Latency":
          return Console.log(`  client  heartbeat ACK after ${event.millis} ms`)
        default:
          return Effect.void
      }
    },
  }).pipe(
    Effect.flip, // the connection ends by failing: that failure is what we want to show
    Effect.provide(NodeTransport.layer()),
  )
  return outcome satisfies GatewayError.ConnectionError
})

Effect.runPromise(Effect.scoped(program)).then(
  (error) => {
    console.log(`\nconnection ended with a typed error: ${error._tag}`)
    console.log(`  ${error.message}`)
    process.exitCode = error._tag === "ZombieDetected" ? 0 : 1
  },
  (defect) => {
    console.error("unexpected defect", defect)
    process.exitCode = 1
  },
)
