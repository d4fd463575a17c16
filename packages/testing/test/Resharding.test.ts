/**
 * What a reshard needs of the fake: sessions of two shard counts at once, each given exactly
 * its guilds' events; 4011 for a shard over the guild limit; a recommendation that can rise;
 * and per-guild traffic to check exactly-once and order with.
 */
import { assert, describe, it } from "@effect/vitest"
import { Protocol } from "@vigil/gateway"
import { Effect } from "effect"
import { FakeGateway, GuildTraffic, Invariants, Traffic } from "../src/index.ts"
import { connect, type TestClient, token } from "./support.ts"

const guilds = Traffic.guildIds(24, 4)

/** Connects and identifies as `shard`, skipping READY's GUILD_CREATEs. */
const shardClient = (gateway: FakeGateway.FakeGatewayService, shard: readonly [number, number]) =>
  Effect.gen(function* () {
    const client = yield* connect(gateway.connectUrl())
    yield* client.next()
    yield* client.identify({ shard })
    const held = guilds.filter((g) => Traffic.shardOf(g, shard[1]) === shard[0]).length
    for (let i = 0; i < held; i++) assert.strictEqual((yield* client.next()).t, "GUILD_CREATE")
    return client
  })

/** Every MESSAGE_CREATE guild a client receives until `quiet` ms pass without one. */
const drain = (client: TestClient, quiet = 300) =>
  Effect.gen(function* () {
    const got: Array<string> = []
    while (true) {
      const p = yield* client.poll(quiet)
      if (p === undefined) return got
      if (p.t === "MESSAGE_CREATE") got.push(`${p.d.guild_id}#${p.d.nonce}`)
    }
  })

describe("FakeGateway resharding", () => {
  it.live("sessions of two shard counts at once: each gets exactly its guilds' events", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 30_000,
        guilds,
        maxConcurrency: 16,
        identifyWindow: 1,
      })
      const old = [yield* shardClient(gateway, [0, 2]), yield* shardClient(gateway, [1, 2])]
      const next = [yield* shardClient(gateway, [1, 4]), yield* shardClient(gateway, [3, 4])]
      const traffic = yield* GuildTraffic.start(gateway, { guilds, rounds: 2 })
      const log = yield* traffic.done
      assert.strictEqual(log.sent, guilds.length * 2)
      assert.strictEqual(log.unrouted, 0)
      // every event went to its old shard, and to its new one when that runs (shards 1 and 3 of 4)
      assert.strictEqual(
        log.copies,
        log.sent + guilds.filter((g) => Traffic.shardOf(g, 4) % 2 === 1).length * 2,
      )
      const expect = (shard: readonly [number, number]) =>
        guilds
          .filter((g) => Traffic.shardOf(g, shard[1]) === shard[0])
          .flatMap((g) => [0, 1].map((n) => `${g}#${n}`))
          .sort()
      for (const [i, client] of old.entries())
        assert.deepStrictEqual((yield* drain(client)).sort(), expect([i, 2]))
      assert.deepStrictEqual((yield* drain(next[0]!)).sort(), expect([1, 4]))
      assert.deepStrictEqual((yield* drain(next[1]!)).sort(), expect([3, 4]))
    }),
  )

  it.live(
    "dispatchToGuild with no session holding the guild fails NoTarget; GuildTraffic counts it unrouted",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 30_000,
          guilds,
          maxConcurrency: 16,
          identifyWindow: 1,
        })
        yield* shardClient(gateway, [0, 2])
        const error = yield* Effect.flip(
          gateway.dispatchToGuild(Traffic.guildIdOnShard(1, 2), "TYPING_START", {}),
        )
        assert.strictEqual(error._tag, "NoTarget")
        const log = yield* (yield* GuildTraffic.start(gateway, { guilds, rounds: 1 })).done
        assert.strictEqual(log.sent, guilds.length / 2)
        assert.strictEqual(log.unrouted, guilds.length / 2)
      }),
  )

  it.live(
    "a shard over maxGuildsPerShard is refused with 4011; enforced, open ones are closed with 4011",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 30_000,
          guilds,
          maxConcurrency: 16,
          identifyWindow: 1,
        })
        const small = yield* shardClient(gateway, [0, 4]) // 6 guilds
        const big = yield* shardClient(gateway, [1, 2]) // 12 guilds
        const closed = yield* gateway.setMaxGuildsPerShard(8, { enforce: true })
        assert.strictEqual(closed.length, 1)
        assert.strictEqual((yield* big.closed()).code, 4011)
        assert.isFalse(small.isClosed())
        const sessions = yield* gateway.sessions
        assert.deepStrictEqual(
          sessions.filter((s) => s.resumable).map((s) => s.shard),
          [[0, 4]],
        )
        const again = yield* connect(gateway.connectUrl())
        yield* again.next()
        yield* again.send({
          op: 2,
          d: { token, properties: { os: "l", browser: "t", device: "t" }, intents: 1, shard: [0, 2] },
        })
        const refused = yield* again.closed()
        assert.strictEqual(refused.code, 4011)
        assert.match(refused.reason, /would hold 12 guilds \(max 8\)/)
      }),
  )

  it.live("GET /gateway/bot's recommendation can be raised at run time", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, guilds, shards: 2 })
      const ask = Effect.promise(() =>
        fetch(`${gateway.httpUrl}/api/v10/gateway/bot`, { headers: { authorization: `Bot ${token}` } }).then(
          (r) => r.json() as Promise<{ shards: number }>,
        ),
      )
      assert.strictEqual((yield* ask).shards, 2)
      yield* gateway.setRecommendedShards(4)
      assert.strictEqual((yield* ask).shards, 4)
    }),
  )

  it("perGuild counts lost, duplicated and out-of-order events", () => {
    const g = guilds[0]!
    const at = (n: number, seq: number) =>
      Protocol.makeDispatch(seq, "MESSAGE_CREATE", Traffic.guildMessage(g, n))
    const report = Invariants.perGuild(new Map([[g, [0, 1, 2, 3]]]), [at(0, 1), at(2, 2), at(1, 3), at(2, 4)])
    assert.strictEqual(report.lost, 1)
    assert.strictEqual(report.duplicated, 1)
    assert.strictEqual(report.outOfOrder, 1)
    assert.strictEqual(report.consumed, 4)
  })
})
