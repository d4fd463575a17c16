/**
 * Hello, Identify, READY and the heartbeat loop, against the fake on a real socket.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { FakeGateway, Recording, Traffic } from "../src/index.ts"
import { connect, token } from "./support.ts"

describe("FakeGateway handshake", () => {
  it.live(
    "sends Hello, answers Identify with READY (seq 1), then a GUILD_CREATE per guild of the shard",
    () =>
      Effect.gen(function* () {
        const guilds = Traffic.guildIds(4, 2)
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 200, guilds, requiredShards: 1 })
        const client = yield* connect(gateway.connectUrl())

        const hello = yield* client.next()
        assert.strictEqual(hello.op, 10)
        assert.strictEqual(hello.d.heartbeat_interval, 200)
        assert.isNull(hello.s)
        assert.isNull(hello.t)

        const ready = yield* client.identify({ shard: [1, 2] })
        assert.strictEqual(ready.op, 0)
        assert.strictEqual(ready.t, "READY")
        assert.strictEqual(ready.s, 1)
        assert.strictEqual(ready.d.v, 10)
        assert.isString(ready.d.session_id)
        assert.strictEqual(ready.d.resume_gateway_url, `${gateway.url}/resume`)
        assert.deepStrictEqual(ready.d.shard, [1, 2])
        assert.isString(ready.d.user.id)
        assert.isString(ready.d.application.id)
        const shardGuilds = guilds.filter((id) => Traffic.shardOf(id, 2) === 1)
        assert.deepStrictEqual(
          ready.d.guilds,
          shardGuilds.map((id) => ({ id, unavailable: true })),
        )

        for (const [i, id] of shardGuilds.entries()) {
          const created = yield* client.next()
          assert.strictEqual(created.t, "GUILD_CREATE")
          assert.strictEqual(created.s, 2 + i)
          assert.strictEqual(created.d.id, id)
        }

        const sessions = yield* gateway.sessions
        assert.strictEqual(sessions.length, 1)
        assert.strictEqual(sessions[0]!.id, ready.d.session_id)
        assert.strictEqual(sessions[0]!.seq, 1 + shardGuilds.length)
      }),
  )

  it.live("ACKs every heartbeat, before and after Identify", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 200 })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      yield* client.heartbeat(null)
      assert.strictEqual((yield* client.next()).op, 11)
      yield* client.identify()
      yield* client.heartbeat(1)
      assert.strictEqual((yield* client.next()).op, 11)
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.heartbeatsPerConnection(entries).get(1), 2)
      assert.strictEqual(Recording.sent(entries, 11).length, 2)
    }),
  )

  it.live("accepts API v9 and reports it in READY", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 200 })
      const client = yield* connect(gateway.connectUrl({ v: 9 }))
      yield* client.next()
      const ready = yield* client.identify()
      assert.strictEqual(ready.d.v, 9)
    }),
  )

  it.live("a dispatch reaches the session's connection with the next sequence number", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 200 })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      yield* client.identify()
      const seqs = yield* gateway.dispatch({ shard: 0 }, "MESSAGE_CREATE", { content: "hi" })
      assert.deepStrictEqual(seqs, [2])
      const event = yield* client.next()
      assert.deepStrictEqual(
        { op: event.op, t: event.t, s: event.s, d: event.d },
        { op: 0, t: "MESSAGE_CREATE", s: 2, d: { content: "hi" } },
      )
    }),
  )

  it.live("emits N events at a rate, in order, with consecutive sequence numbers", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      yield* client.identify()
      const seqs = yield* gateway.emit("latest", { count: 20, perSecond: 500 })
      assert.deepStrictEqual(
        seqs,
        Array.from({ length: 20 }, (_, i) => i + 2),
      )
      for (let i = 0; i < 20; i++) {
        const event = yield* client.next()
        assert.strictEqual(event.t, "MESSAGE_CREATE")
        assert.strictEqual(event.s, i + 2)
        assert.strictEqual(event.d.content, `message ${i}`)
      }
    }),
  )

  it.live("routes a guild's events to the shard (guild_id >> 22) % count", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, maxConcurrency: 2 })
      const shard0 = yield* connect(gateway.connectUrl())
      const shard1 = yield* connect(gateway.connectUrl())
      yield* shard0.next()
      yield* shard1.next()
      yield* shard0.identify({ shard: [0, 2] })
      yield* shard1.identify({ shard: [1, 2] })
      const guild = Traffic.guildIdOnShard(1, 2, 3)
      assert.strictEqual(Traffic.shardOf(guild, 2), 1)
      yield* gateway.dispatchToGuild(guild, "TYPING_START", { guild_id: guild })
      const event = yield* shard1.next()
      assert.strictEqual(event.t, "TYPING_START")
      assert.strictEqual(event.d.guild_id, guild)
      assert.isUndefined(yield* shard0.poll(100), "shard 0 gets nothing")
    }),
  )

  it.live("a large GUILD_CREATE arrives whole", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const client = yield* connect(gateway.connectUrl())
      yield* client.next()
      yield* client.identify()
      const guild = Traffic.guildIds(1)[0]!
      yield* gateway.dispatch("latest", "GUILD_CREATE", Traffic.guildCreate(guild, { members: 5000 }))
      const event = yield* client.next()
      assert.strictEqual(event.d.members.length, 5000)
      assert.isAbove(client.frames.at(-1)!.length, 500_000)
    }),
  )

  it.live("a targeted control call that matches nothing fails with NoTarget", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const error = yield* Effect.flip(gateway.dispatch({ shard: 3 }, "X", {}))
      assert.strictEqual(error._tag, "NoTarget")
      const closeError = yield* Effect.flip(gateway.close("all", 4000))
      assert.strictEqual(closeError._tag, "NoTarget")
    }),
  )
})

describe("Traffic", () => {
  it("spreads guild ids round-robin over shards", () => {
    const ids = Traffic.guildIds(12, 3)
    assert.deepStrictEqual(
      ids.map((id) => Traffic.shardOf(id, 3)),
      [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2],
    )
    assert.strictEqual(new Set(ids).size, 12)
    assert.strictEqual(Traffic.shardOf(Traffic.guildIdOnShard(5, 7, 9), 7), 5)
    assert.strictEqual(Traffic.shardOf(undefined, 7), 0, "DMs go to shard 0")
  })

  it("computes shard ids from the snowflake's timestamp bits", () => {
    // 175928847299117063 is Discord's documented example snowflake.
    assert.strictEqual(Traffic.shardOf("175928847299117063", 16), Number((175928847299117063n >> 22n) % 16n))
    const id = Traffic.snowflake(1_700_000_000_000)
    assert.strictEqual(Number((BigInt(id) >> 22n) + Traffic.discordEpoch), 1_700_000_000_000)
  })
})
