/**
 * The fake gateway and the proxy are scoped: when the scope closes, nothing is left.
 * Also: the `Layer` form.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { eventually } from "../src/Eventually.ts"
import { FakeGateway, TcpProxy } from "../src/index.ts"
import { connect, token } from "./support.ts"

const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length

describe("FakeGateway lifecycle", () => {
  it.live("closing its scope leaves no server, socket, fiber or timer behind", () =>
    Effect.gen(function* () {
      const serversBefore = count("TCPServerWrap")
      const timersBefore = count("Timeout")
      const scope = yield* Scope.make()
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 200 }).pipe(Scope.provide(scope))
      assert.strictEqual(count("TCPServerWrap"), serversBefore + 1)

      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      yield* client.identify()
      // leave work in flight: a delayed ACK sleeping, a paced stream of dispatches
      yield* gateway.delayAcks("latest", 10_000)
      yield* client.heartbeat(1)
      yield* gateway.awaitEntry((e) => e._tag === "Received" && e.op === 1)
      yield* Effect.forkChild(Effect.ignore(gateway.emit("latest", { count: 1000, perSecond: 10 })))
      assert.strictEqual(yield* gateway.openSockets, 1)

      yield* Scope.close(scope, Exit.void)

      assert.strictEqual(yield* gateway.openSockets, 0, "ws holds no client")
      assert.strictEqual((yield* client.closed()).code, 1006, "the client's socket was torn down")
      assert.strictEqual(count("TCPServerWrap"), serversBefore, "the listening socket is closed")
      const refused = yield* Effect.flip(connect(gateway.connectUrl()))
      assert.match(refused.detail, /ECONNREFUSED/)
      const http = yield* Effect.promise(() =>
        fetch(`${gateway.httpUrl}/gateway/bot`).then(
          () => "answered",
          () => "refused",
        ),
      )
      assert.strictEqual(http, "refused")
      const late = yield* Effect.flip(gateway.dispatch("all", "MESSAGE_CREATE", {}))
      assert.strictEqual(late._tag, "NoTarget", "no session outlives the gateway")
      // the delayed ACK, the watchdog and the paced stream were interrupted with the scope
      const seen = (yield* gateway.entries).length
      yield* Effect.sleep(300)
      assert.strictEqual((yield* gateway.entries).length, seen, "nothing happens after the scope closed")
      yield* eventually(() => count("Timeout") <= timersBefore, "every timer of the scope released")
    }),
  )

  it.live("as a Layer: the service is the same gateway", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.FakeGateway
      const client = yield* connect(gateway.connectUrl())
      assert.strictEqual((yield* client.next()).d.heartbeat_interval, 321)
    }).pipe(Effect.provide(FakeGateway.layer({ token, heartbeatInterval: 321 }))),
  )
})

describe("TcpProxy", () => {
  const setup = Effect.gen(function* () {
    const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000 })
    const proxy = yield* TcpProxy.make({ target: { port: gateway.port } })
    yield* gateway.advertise(proxy.url)
    const client = yield* connect(`${proxy.url}/?v=10&encoding=json`)
    yield* client.next()
    const ready = yield* client.identify()
    return { gateway, proxy, client, ready }
  })

  it.live("forwards both ways; the gateway advertises the proxy", () =>
    Effect.gen(function* () {
      const { gateway, proxy, client, ready } = yield* setup
      assert.strictEqual(ready.d.resume_gateway_url, `${proxy.url}/resume`)
      yield* client.heartbeat(1)
      assert.strictEqual((yield* client.next()).op, 11)
      assert.strictEqual(yield* proxy.links, 1)
      const stats = yield* proxy.stats
      assert.strictEqual(stats.accepted, 1)
      assert.isAbove(stats.bytesToClient, 0)
      assert.isAbove(stats.bytesToServer, 0)
      assert.strictEqual(yield* gateway.openSockets, 1)
    }),
  )

  it.live("stall: both sockets stay open, nothing moves; resume delivers what was held, in order", () =>
    Effect.gen(function* () {
      const { gateway, proxy, client } = yield* setup
      yield* proxy.stall
      yield* client.heartbeat(1)
      yield* gateway.dispatch("latest", "MESSAGE_CREATE", { n: 1 })
      assert.isUndefined(yield* client.poll(200), "nothing reaches the client")
      const heartbeats = (yield* gateway.entries).filter((e) => e._tag === "Received" && e.op === 1)
      assert.lengthOf(heartbeats, 0, "nothing reaches the server")
      assert.isFalse(client.isClosed())
      assert.strictEqual(yield* gateway.openSockets, 1)
      yield* proxy.resume
      const first = yield* client.next()
      const second = yield* client.next()
      assert.deepStrictEqual([first.t, second.op], ["MESSAGE_CREATE", 11])
    }),
  )

  it.live("cut: both sides are destroyed; the client sees 1006, the server a network close", () =>
    Effect.gen(function* () {
      const { gateway, proxy, client } = yield* setup
      assert.strictEqual(yield* proxy.cut, 1)
      assert.strictEqual((yield* client.closed()).code, 1006)
      const closed = yield* gateway.awaitEntry((e) => e._tag === "Closed")
      assert.deepStrictEqual(closed._tag === "Closed" && [closed.by, closed.code], ["network", 1006])
      assert.strictEqual(yield* proxy.links, 0)
      assert.strictEqual((yield* proxy.stats).cut, 1)
    }),
  )

  it.live("slow: each chunk is delivered after the latency", () =>
    Effect.gen(function* () {
      const { proxy, client } = yield* setup
      yield* proxy.slow({ latency: 250 })
      yield* client.heartbeat(1)
      assert.isUndefined(yield* client.poll(100), "not yet")
      assert.strictEqual((yield* client.next(2000)).op, 11)
    }),
  )

  it.live("slow: a bandwidth cap holds a large payload back", () =>
    Effect.gen(function* () {
      const { gateway, proxy, client } = yield* setup
      yield* proxy.slow({ bytesPerSecond: 100_000 })
      yield* gateway.dispatch("latest", "GUILD_CREATE", { blob: "x".repeat(60_000) })
      assert.isUndefined(yield* client.poll(150), "60 kB at 100 kB/s takes longer than this")
      assert.strictEqual((yield* client.next(3000)).t, "GUILD_CREATE")
    }),
  )

  it.live("refuse: new connections are dropped at once; existing links are untouched", () =>
    Effect.gen(function* () {
      const { proxy, client } = yield* setup
      yield* proxy.refuse(true)
      const error = yield* Effect.flip(connect(`${proxy.url}/?v=10&encoding=json`))
      assert.strictEqual(error._tag, "ClientError")
      assert.strictEqual((yield* proxy.stats).refused, 1)
      yield* client.heartbeat(1)
      assert.strictEqual((yield* client.next()).op, 11)
      yield* proxy.refuse(false)
      const again = yield* connect(`${proxy.url}/?v=10&encoding=json`)
      assert.strictEqual((yield* again.next()).op, 10)
    }),
  )

  it.live("a client closing through the proxy reaches the server with its code", () =>
    Effect.gen(function* () {
      const { gateway, client } = yield* setup
      yield* client.close(4900)
      yield* client.closed()
      const closed = yield* gateway.awaitEntry((e) => e._tag === "Closed")
      assert.deepStrictEqual(closed._tag === "Closed" && [closed.by, closed.code], ["client", 4900])
    }),
  )

  it.live("closing its scope closes the port and every link", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000 })
      const scope = yield* Scope.make()
      const proxy = yield* TcpProxy.make({ target: { port: gateway.port } }).pipe(Scope.provide(scope))
      const client = yield* connect(`${proxy.url}/?v=10&encoding=json`)
      yield* client.next()
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual((yield* client.closed()).code, 1006)
      const refused = yield* Effect.flip(connect(`${proxy.url}/?v=10&encoding=json`))
      assert.match(refused.detail, /ECONNREFUSED/)
      const closed = yield* gateway.awaitEntry((e) => e._tag === "Closed")
      assert.deepStrictEqual(closed._tag === "Closed" && closed.by, "network", "the server's side went too")
      assert.strictEqual(yield* gateway.openSockets, 0)
    }),
  )

  it.live("as a Layer next to the gateway's", () =>
    Effect.gen(function* () {
      const proxy = yield* TcpProxy.TcpProxy
      const client = yield* connect(`${proxy.url}/?v=10&encoding=json`)
      assert.strictEqual((yield* client.next()).op, 10)
    }).pipe(
      Effect.provide(
        Layer.unwrap(
          Effect.gen(function* () {
            const gateway = yield* FakeGateway.FakeGateway
            return TcpProxy.layer({ target: { port: gateway.port } })
          }),
        ).pipe(Layer.provide(FakeGateway.layer({ token, heartbeatInterval: 60_000 }))),
      ),
    ),
  )
})
