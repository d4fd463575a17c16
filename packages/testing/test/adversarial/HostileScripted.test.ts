/**
 * The hostile controls of ScriptedGateway (what chaos schedules use), seen from a bare
 * client on the in-memory transport.
 */
import { assert, describe, it } from "@effect/vitest"
import { Transport } from "@vigil/gateway"
import { Effect } from "effect"
import { ScriptedGateway } from "../../src/index.ts"

const identify = JSON.stringify({ op: 2, d: { token: "t", intents: 1, shard: [0, 1] } })

/** Connects, reads Hello, sends `first`, then reads until the server closes or `max` frames came. */
const session = (first: string, max = 1_000) =>
  Effect.gen(function* () {
    const transport = yield* Transport.GatewayTransport
    const socket = yield* transport.connect("memory://gateway")
    const frames: Array<{ op: number; t: string | null }> = []
    const take = Effect.map(socket.receive, (batch) => {
      for (const f of batch) frames.push(JSON.parse(f as string))
    })
    yield* take
    yield* socket.send(first)
    const closed = yield* Effect.gen(function* () {
      while (frames.length < max) yield* take
      return undefined
    }).pipe(Effect.catch((reason) => Effect.succeed(reason)))
    return { frames, closed }
  })

const env = ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: 41_250 })

describe("ScriptedGateway as a hostile server", () => {
  it.effect("endAfterHandshake: READY, then the close, on every connection until switched off", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      yield* server.endAfterHandshake({ close: 4000 })
      const first = yield* Effect.scoped(session(identify))
      assert.deepStrictEqual(
        first.frames.map((f) => f.t ?? f.op),
        [10, "READY"],
      )
      assert.strictEqual((first.closed as Transport.TransportClosed).code, 4000)
      yield* server.endAfterHandshake(undefined)
      const second = yield* Effect.scoped(session(identify, 2))
      assert.isUndefined(second.closed, "lives on")
    }).pipe(Effect.provide(env)),
  )

  it.effect("endAfterHandshake with op 7 or a malformed frame", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      yield* server.endAfterHandshake("reconnect")
      const seven = yield* Effect.scoped(session(identify, 3))
      assert.strictEqual(seven.frames.at(-1)?.op, 7)
      yield* server.endAfterHandshake("malformed")
      const transport = yield* Transport.GatewayTransport
      const raw = yield* Effect.scoped(
        Effect.gen(function* () {
          const socket = yield* transport.connect("memory://gateway")
          yield* socket.receive
          yield* socket.send(identify)
          const frames: Array<Transport.Frame> = []
          while (frames.length < 2) frames.push(...(yield* socket.receive))
          return frames
        }),
      )
      assert.strictEqual(raw.at(-1), "{malformed")
    }).pipe(Effect.provide(env)),
  )

  it.effect("ignoreHandshakes: heartbeats are ACKed, Identify gets nothing", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      yield* server.ignoreHandshakes(true)
      const transport = yield* Transport.GatewayTransport
      const frames = yield* Effect.scoped(
        Effect.gen(function* () {
          const socket = yield* transport.connect("memory://gateway")
          yield* socket.receive
          yield* socket.send(identify)
          yield* socket.send(JSON.stringify({ op: 1, d: null }))
          return yield* socket.receive
        }),
      )
      assert.deepStrictEqual(
        frames.map((f) => JSON.parse(f as string).op),
        [11],
      )
      assert.lengthOf(server.identifies(), 1)
    }).pipe(Effect.provide(env)),
  )

  it.effect("flood sends op 1 or op 7 back to back; setHeartbeatInterval changes later Hellos", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const transport = yield* Transport.GatewayTransport
      yield* Effect.scoped(
        Effect.gen(function* () {
          const socket = yield* transport.connect("memory://gateway")
          yield* socket.receive
          yield* socket.send(identify)
          yield* socket.receive
          yield* server.flood(1, 50)
          const frames: Array<Transport.Frame> = []
          while (frames.length < 50) frames.push(...(yield* socket.receive))
          assert.isTrue(frames.every((f) => JSON.parse(f as string).op === 1))
        }),
      )
      yield* server.setHeartbeatInterval(1)
      const hello = yield* Effect.scoped(
        Effect.flatMap(Transport.GatewayTransport, (t) =>
          Effect.flatMap(t.connect("memory://gateway"), (s) => s.receive),
        ),
      )
      assert.deepStrictEqual(JSON.parse(hello[0] as string).d, { heartbeat_interval: 1 })
    }).pipe(Effect.provide(env)),
  )
})
