/**
 * Every mistake a client can make, and the close code (or Invalid Session) it earns.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { FakeGateway, Recording } from "../src/index.ts"
import { connect, identifyData, token } from "./support.ts"

const closesWith = (
  config: Partial<FakeGateway.Config>,
  act: (
    client: Effect.Success<ReturnType<typeof connect>>,
    gateway: FakeGateway.FakeGatewayService,
  ) => Effect.Effect<void, unknown>,
  url?: (gateway: FakeGateway.FakeGatewayService) => string,
) =>
  Effect.gen(function* () {
    const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, ...config })
    const client = yield* connect(url ? url(gateway) : gateway.connectUrl())
    yield* act(client, gateway)
    const closed = yield* client.closed()
    const rejected = Recording.only(yield* gateway.entries, "Rejected")
    return { code: closed.code, reason: closed.reason, rejected }
  })

const hello = (client: Effect.Success<ReturnType<typeof connect>>) => Effect.asVoid(client.next())

describe("FakeGateway validation", () => {
  it.live("a wrong token: 4004", () =>
    Effect.gen(function* () {
      const { code, rejected } = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ token: "nope" }) })),
      )
      assert.strictEqual(code, 4004)
      assert.strictEqual(rejected[0]?.code, 4004)
    }),
  )

  it.live("a shard id outside the count: 4010", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ shard: [2, 2] }) })),
      )
      assert.strictEqual(code, 4010)
    }),
  )

  it.live("a malformed shard: 4010", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ shard: [0] }) })),
      )
      assert.strictEqual(code, 4010)
    }),
  )

  it.live("fewer shards than required: 4011 (and no shard at all counts as one)", () =>
    Effect.gen(function* () {
      const few = yield* closesWith({ requiredShards: 4 }, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ shard: [0, 2] }) })),
      )
      assert.strictEqual(few.code, 4011)
      const none = yield* closesWith({ requiredShards: 2 }, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ shard: undefined }) })),
      )
      assert.strictEqual(none.code, 4011)
    }),
  )

  it.live("an unknown intent bit, or a negative value: 4013", () =>
    Effect.gen(function* () {
      const unknown = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ intents: 1 << 30 }) })),
      )
      assert.strictEqual(unknown.code, 4013)
      const negative = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ intents: -1 }) })),
      )
      assert.strictEqual(negative.code, 4013)
    }),
  )

  it.live("a privileged intent the bot has not enabled: 4014; an enabled one passes", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith({ allowedPrivilegedIntents: 1 << 1 }, (client) =>
        Effect.andThen(hello(client), client.send({ op: 2, d: identifyData({ intents: 1 << 15 }) })),
      )
      assert.strictEqual(code, 4014)

      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 30_000,
        allowedPrivilegedIntents: 1 << 1,
      })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      const ready = yield* client.identify({ intents: (1 << 1) | 1 })
      assert.strictEqual(ready.t, "READY")
    }),
  )

  it.live("a second Identify: 4005", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith({}, (client) =>
        Effect.gen(function* () {
          yield* client.next()
          yield* client.identify()
          yield* client.send({ op: 2, d: identifyData() })
        }),
      )
      assert.strictEqual(code, 4005)
    }),
  )

  it.live("a command before Identify: 4003", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith({}, (client) =>
        Effect.andThen(
          hello(client),
          client.send({ op: 3, d: { since: null, activities: [], status: "online", afk: false } }),
        ),
      )
      assert.strictEqual(code, 4003)
    }),
  )

  it.live("malformed JSON, or JSON that is not a payload: 4002", () =>
    Effect.gen(function* () {
      const garbage = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.sendRaw("{op:1")),
      )
      assert.strictEqual(garbage.code, 4002)
      const notPayload = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.sendRaw("[1,2]")),
      )
      assert.strictEqual(notPayload.code, 4002)
    }),
  )

  it.live("an unknown opcode: 4001", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith({}, (client) =>
        Effect.andThen(hello(client), client.send({ op: 5, d: null })),
      )
      assert.strictEqual(code, 4001)
    }),
  )

  it.live("a payload over 4096 bytes: 4002; exactly 4096 is fine", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const fine = yield* connect(gateway.connectUrl())
      yield* fine.next()
      const base = JSON.stringify({ op: 1, d: null, pad: "" })
      yield* fine.sendRaw(JSON.stringify({ op: 1, d: null, pad: "x".repeat(4096 - base.length) }))
      assert.strictEqual((yield* fine.next()).op, 11)

      const { code, reason } = yield* closesWith({}, (client) =>
        Effect.andThen(
          hello(client),
          client.sendRaw(JSON.stringify({ op: 1, d: null, pad: "x".repeat(4097 - base.length) })),
        ),
      )
      assert.strictEqual(code, 4002)
      assert.match(reason, /4097 bytes/)
    }),
  )

  it.live("API versions other than 9 and 10: 4012", () =>
    Effect.gen(function* () {
      const { code } = yield* closesWith(
        {},
        () => Effect.void,
        (gateway) => gateway.connectUrl({ v: 8 }),
      )
      assert.strictEqual(code, 4012)
      const missing = yield* closesWith(
        {},
        () => Effect.void,
        (gateway) => `${gateway.url}/?encoding=json`,
      )
      assert.strictEqual(missing.code, 4012)
    }),
  )

  it.live("an encoding or compression the fake does not speak is refused, saying why", () =>
    Effect.gen(function* () {
      const etf = yield* closesWith(
        {},
        () => Effect.void,
        (gateway) => gateway.connectUrl({ encoding: "etf" }),
      )
      assert.strictEqual(etf.code, 4002)
      assert.match(etf.reason, /etf/)
    }),
  )

  it.live("the 121st command within 60 s: 4008, heartbeats included", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000 })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      for (let i = 0; i < 120; i++) yield* client.heartbeat(null)
      for (let i = 0; i < 120; i++) assert.strictEqual((yield* client.next()).op, 11)
      assert.isFalse(client.isClosed(), "120 commands are within the limit")
      yield* client.heartbeat(null)
      const closed = yield* client.closed()
      assert.strictEqual(closed.code, 4008)
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.received(entries, 1).length, 121)
    }),
  )

  it.live("a rate-limited session cannot be resumed (4008 means a new session)", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 60_000,
        commandLimit: { commands: 3, window: "1 minute" },
      })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      const ready = yield* client.identify()
      for (let i = 0; i < 3; i++) yield* client.heartbeat(1)
      assert.strictEqual((yield* client.closed()).code, 4008)
      const again = yield* connect(gateway.connectUrl())
      yield* again.next()
      yield* again.send({ op: 6, d: { token, session_id: ready.d.session_id, seq: 1 } })
      const answer = yield* again.next()
      assert.deepStrictEqual([answer.op, answer.d], [9, false])
    }),
  )
})
