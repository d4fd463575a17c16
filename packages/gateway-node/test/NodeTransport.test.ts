/**
 * The connection core against real sockets on 127.0.0.1: a plain `ws` server plays a
 * gateway whose behaviour each test scripts. Real time, small intervals.
 */

import { type AddressInfo, connect, createServer, type Socket } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Connection, type GatewayError, Heartbeat } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import { Deferred, Effect, Exit, Fiber, Layer, Random, Redacted } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import * as RawGateway from "./RawGateway.ts"

// The shortest interval a connection honours: real time, so the shorter the better.
const interval = Heartbeat.minimumIntervalMillis
const token = Redacted.make("node-transport-test-token")

interface ServerSide {
  readonly url: string
  readonly closes: Array<number>
  readonly heartbeats: () => number
  readonly clients: () => number
  readonly ackEnabled: { value: boolean }
}

/** A minimal gateway: Hello, READY on Identify, ACKs while `ackEnabled`. */
const scriptedServer = Effect.acquireRelease(
  Effect.callback<{ wss: WebSocketServer; side: ServerSide }>((resume) => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 })
    const closes: Array<number> = []
    let heartbeats = 0
    const ackEnabled = { value: true }
    wss.on("connection", (ws: WebSocket) => {
      ws.on("close", (code) => closes.push(code))
      ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: interval }, s: null, t: null }))
      ws.on("message", (raw) => {
        const msg = JSON.parse(raw.toString())
        if (msg.op === 1) {
          heartbeats++
          if (ackEnabled.value) ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }))
        } else if (msg.op === 2) {
          ws.send(
            JSON.stringify({
              op: 0,
              s: 1,
              t: "READY",
              d: {
                v: 10,
                session_id: "s",
                resume_gateway_url: "ws://127.0.0.1",
                user: { id: "1", username: "u" },
                guilds: [],
              },
            }),
          )
        }
      })
    })
    wss.on("listening", () => {
      const { port } = wss.address() as AddressInfo
      resume(
        Effect.succeed({
          wss,
          side: {
            url: `ws://127.0.0.1:${port}`,
            closes,
            heartbeats: () => heartbeats,
            clients: () => wss.clients.size,
            ackEnabled,
          },
        }),
      )
    })
  }),
  ({ wss }) =>
    Effect.callback<void>((resume) => {
      for (const client of wss.clients) client.terminate()
      wss.close(() => resume(Effect.void))
    }),
).pipe(Effect.map(({ side }) => side))

const run = (url: string, overrides: Partial<Connection.ConnectionOptions> = {}) =>
  Connection.run({
    url,
    token,
    intents: 1,
    shard: [0, 1],
    handshake: { _tag: "identify" },
    ...overrides,
  }).pipe(Effect.provide(NodeTransport.layer()))

const failureOf = <E>(exit: Exit.Exit<unknown, E>): E | undefined => {
  if (!Exit.isFailure(exit)) return undefined
  const reason = exit.cause.reasons[0]
  return reason?._tag === "Fail" ? reason.error : undefined
}

describe("Connection over a real WebSocket", () => {
  it.live("a server that stops ACKing: ZombieDetected, and the server sees a resumable close", () =>
    Effect.gen(function* () {
      const server = yield* scriptedServer
      const ready = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(
        run(server.url, {
          onEvent: (e) =>
            e._tag === "Ready" ? Deferred.succeed(ready, undefined).pipe(Effect.asVoid) : Effect.void,
        }),
      )
      yield* Deferred.await(ready)
      yield* eventually(() => server.heartbeats() >= 2, "two heartbeats")
      server.ackEnabled.value = false
      const exit = yield* Fiber.await(fiber)
      const error = failureOf(exit)
      assert.strictEqual(error?._tag, "ZombieDetected")
      yield* eventually(() => server.closes.length === 1, "the server to see one close")
      const code = server.closes[0]!
      assert.isTrue(code !== 1000 && code !== 1001, `closed with ${code}`)
      assert.strictEqual(code, 4900)
    }),
  )

  it.live("a half-open peer (TCP open, nothing answers) is detected within one interval plus a bound", () =>
    Effect.gen(function* () {
      // A TCP relay in front of the server that can freeze the link both ways while
      // keeping both sockets open: exactly what a dead NAT entry looks like.
      const server = yield* scriptedServer
      const upstreamPort = Number(new URL(server.url).port)
      const frozen = { value: false }
      const sockets: Array<Socket> = []
      const relay = yield* Effect.acquireRelease(
        Effect.callback<ReturnType<typeof createServer>>((resume) => {
          const srv = createServer((client) => {
            const up = connect(upstreamPort, "127.0.0.1")
            sockets.push(client, up)
            client.on("data", (chunk) => (frozen.value ? undefined : up.write(chunk)))
            up.on("data", (chunk) => (frozen.value ? undefined : client.write(chunk)))
            client.on("error", () => {})
            up.on("error", () => {})
          })
          srv.listen(0, "127.0.0.1", () => resume(Effect.succeed(srv)))
        }),
        (srv) =>
          Effect.callback<void>((resume) => {
            for (const s of sockets) s.destroy()
            srv.close(() => resume(Effect.void))
          }),
      )
      const relayPort = (relay.address() as AddressInfo).port
      const ready = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(
        run(`ws://127.0.0.1:${relayPort}`, {
          onEvent: (e) =>
            e._tag === "Ready" ? Deferred.succeed(ready, undefined).pipe(Effect.asVoid) : Effect.void,
        }),
      )
      yield* Deferred.await(ready)
      yield* eventually(() => server.heartbeats() >= 1, "a heartbeat")
      frozen.value = true
      const exit = yield* Fiber.await(fiber)
      const error = failureOf(exit) as GatewayError.ZombieDetected | undefined
      assert.strictEqual(error?._tag, "ZombieDetected")
      // the unanswered beat was given one interval, plus slack for a loaded machine, and not
      // a second interval
      assert.isBelow(error!.waitedMillis, interval + 750)
      // the client did not wait for a close handshake: its side of the link is gone
      yield* eventually(() => sockets[0]!.destroyed || sockets[0]!.readableEnded, "the socket torn down")
    }),
  )

  it.live("after the scope closes no socket, timer or listener is left", () =>
    Effect.gen(function* () {
      const server = yield* scriptedServer
      const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
      const ready = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(
        run(server.url, {
          onEvent: (e) =>
            e._tag === "Ready" ? Deferred.succeed(ready, undefined).pipe(Effect.asVoid) : Effect.void,
        }),
      )
      yield* Deferred.await(ready)
      yield* eventually(() => server.heartbeats() >= 1, "a heartbeat")
      assert.strictEqual(server.clients(), 1)
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => server.clients() === 0, "the server to see the socket go")
      yield* eventually(() => server.closes.length === 1, "the server to see one close")
      assert.strictEqual(server.closes[0], 4900, "interruption closes with a resumable code")
      const beats = server.heartbeats()
      yield* Effect.sleep(interval * 3)
      assert.strictEqual(server.heartbeats(), beats, "no heartbeat after the scope closed")
      const timersAfter = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
      assert.isAtMost(timersAfter, timersBefore, "no timer left behind")
    }),
  )

  it.live("logout closes with 1000; the run succeeds", () =>
    Effect.gen(function* () {
      const server = yield* scriptedServer
      const stop = yield* Deferred.make<Connection.StopMode>()
      const fiber = yield* Effect.forkChild(
        run(server.url, {
          stop: Deferred.await(stop),
          onEvent: (e) =>
            e._tag === "Ready" ? Deferred.succeed(stop, "logout").pipe(Effect.asVoid) : Effect.void,
        }),
      )
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isSuccess(exit))
      yield* eventually(() => server.closes.length === 1, "the server to see one close")
      assert.strictEqual(server.closes[0], 1000)
    }),
  )

  it.live(
    "a resumable close with handshake reads every frame before the server's close frame; without, they are cut",
    () =>
      Effect.gen(function* () {
        // 200 frames at once; the client pauses its reads after 1, so the rest wait in TCP.
        const count = 200
        const closes: Array<number> = []
        const wss = yield* Effect.acquireRelease(
          Effect.callback<WebSocketServer>((resume) => {
            const server = new WebSocketServer({ host: "127.0.0.1", port: 0 })
            server.on("connection", (ws: WebSocket) => {
              ws.on("close", (code) => closes.push(code))
              for (let n = 0; n < count; n++) ws.send(JSON.stringify({ n, pad: "x".repeat(2000) }))
            })
            server.on("listening", () => resume(Effect.succeed(server)))
          }),
          (server) =>
            Effect.callback<void>((resume) => {
              for (const client of server.clients) client.terminate()
              server.close(() => resume(Effect.void))
            }),
        )
        const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`
        const transport = NodeTransport.make({ highWaterFrames: 1 })
        const closeAndRead = (handshake: boolean) =>
          Effect.scoped(
            Effect.gen(function* () {
              const socket = yield* transport.connect(url)
              yield* Effect.sleep(300)
              yield* socket.close(4900, "", { handshake })
              let frames = 0
              for (;;) {
                const next = yield* Effect.result(socket.receive)
                if (next._tag === "Failure")
                  return { frames, code: next.failure._tag === "TransportClosed" ? next.failure.code : -1 }
                frames += next.success.length
              }
            }),
          )
        const read = yield* closeAndRead(true)
        assert.deepStrictEqual(
          read,
          { frames: count, code: 4900 },
          "all frames, then the server's close frame",
        )
        const cut = yield* closeAndRead(false)
        assert.isBelow(cut.frames, count, "torn down at once, frames still in TCP are lost")
        yield* eventually(() => closes.length === 2, "the server to see both closes")
        assert.strictEqual(closes[0], 4900, "the session stays resumable")
      }),
  )

  it.live("a refused connection is a typed TransportError", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(run("ws://127.0.0.1:1"))
      const error = failureOf(exit)
      assert.strictEqual(error?._tag, "TransportError")
      assert.strictEqual((error as GatewayError.TransportError).stage, "open")
    }),
  )
})

const hello = { op: 10, d: { heartbeat_interval: interval }, s: null, t: null }
const ready = (seq: number) => ({
  op: 0,
  s: seq,
  t: "READY",
  d: {
    v: 10,
    session_id: "s",
    resume_gateway_url: "ws://127.0.0.1",
    user: { id: "1", username: "u" },
    guilds: [],
  },
})

describe("Connection over a hand-written gateway (bytes and timing under the test's control)", () => {
  const fatal: Array<[number, string]> = [
    [4004, "AuthenticationFailed"],
    [4014, "DisallowedIntents"],
  ]
  for (const [code, tag] of fatal) {
    it.live(
      `close ${code} with the TCP link held open while a heartbeat is due: ${tag}, not a write failure`,
      () =>
        Effect.gen(function* () {
          // The server answers Identify with a close frame and holds TCP open for 4 s: `ws`
          // reports CLOSING meanwhile, and the heartbeat due within a second cannot be written.
          const holdMillis = 4_000
          let releasedAt: number | undefined
          const server = yield* RawGateway.make((peer) => {
            peer.send(hello)
            peer.onMessage = (message) => {
              if (message.op !== 2) return
              peer.closeFrame(code, "refused")
              setTimeout(() => {
                releasedAt = performance.now()
                peer.destroy()
              }, holdMillis)
            }
          })
          const started = performance.now()
          const exit = yield* Effect.exit(run(server.url))
          const endedAt = performance.now()
          assert.strictEqual(failureOf(exit)?._tag, tag)
          // It was decided when the beat failed, not when the server let TCP go.
          assert.isUndefined(
            releasedAt,
            `decided ${endedAt - started} ms after the start, before the TCP close`,
          )
        }),
    )
  }

  it.live(
    "a close frame with the TCP link held open and nothing to write: decided within a second or so",
    () =>
      Effect.gen(function* () {
        let releasedAt: number | undefined
        const server = yield* RawGateway.make((peer) => {
          peer.send({ ...hello, d: { heartbeat_interval: 41_250 } })
          peer.onMessage = (message) => {
            if (message.op !== 2) return
            peer.closeFrame(4004, "refused")
            setTimeout(() => {
              releasedAt = performance.now()
              peer.destroy()
            }, 5_000)
          }
        })
        const started = performance.now()
        // The first beat is 37 s away: no write will reveal the closing socket.
        const exit = yield* Effect.exit(
          run(server.url).pipe(
            Effect.provide(
              Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.9, nextIntUnsafe: () => 0 }),
            ),
          ),
        )
        const tookMillis = performance.now() - started
        assert.strictEqual(failureOf(exit)?._tag, "AuthenticationFailed")
        assert.isUndefined(releasedAt, `decided after ${tookMillis} ms, before the TCP close`)
      }),
  )

  it.live("frames that arrive in one TCP write are handed over as one batch", () =>
    Effect.gen(function* () {
      const server = yield* RawGateway.make((peer) => {
        peer.send(hello)
        peer.onMessage = (message) => {
          if (message.op === 1) peer.send({ op: 11, d: null, s: null, t: null })
          if (message.op !== 2) return
          peer.send(ready(1))
          peer.send(...[2, 3, 4, 5, 6].map((s) => ({ op: 0, s, t: "MESSAGE_CREATE", d: { n: s } })))
        }
      })
      const batches: Array<ReadonlyArray<number>> = []
      const done = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(
        run(server.url, {
          onEvent: (e) => {
            if (e._tag !== "Dispatches") return Effect.void
            batches.push(e.dispatches.map((d) => d.seq))
            return e.dispatches.some((d) => d.seq === 6) ? Deferred.succeed(done, undefined) : Effect.void
          },
        }),
      )
      yield* Deferred.await(done)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(batches, [[1], [2, 3, 4, 5, 6]])
    }),
  )
})
