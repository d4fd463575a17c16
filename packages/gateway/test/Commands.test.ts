/**
 * Typed gateway commands against the scripted gateway (TestClock): Identify's intents and
 * presence, Presence / Voice State / Soundboard commands on a shard and through the manager,
 * and RATE_LIMITED failing the member request it answers, matched by nonce.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, Intents, SessionStore, Shard, ShardManager } from "@vigil/gateway"
import { MemoryTransport, ScriptedGateway, Settle } from "@vigil/gateway/testing"
import { ActivityType, PresenceUpdateStatus } from "discord-api-types/v10"
import { Effect, Fiber, Layer, Random, Redacted } from "effect"
import { FetchHttpClient } from "effect/http"

const { GatewayIntentBits } = Intents

const env = Layer.mergeAll(
  ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: 41_250 }),
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 4 }),
  FetchHttpClient.layer, // not called: the manager gets its /gateway/bot answer
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 }),
)

const token = Redacted.make("commands-test-token")

const presence = {
  since: null,
  activities: [{ name: "the gateway", type: ActivityType.Watching }],
  status: PresenceUpdateStatus.Idle,
  afk: false,
}

const startShard = (overrides: Partial<Shard.ShardConfig> = {}) =>
  Effect.gen(function* () {
    const shard = yield* Shard.make({
      token,
      intents: 1,
      shard: [0, 1],
      gatewayUrl: "memory://gateway",
      ...overrides,
    })
    yield* Settle.settle
    return shard
  })

/** The `d` of every frame of opcode `op` the client wrote, on every connection. */
const written = (gateway: MemoryTransport.MemoryGateway, op: number) =>
  gateway
    .peers()
    .flatMap((peer) => peer.sent.filter((frame) => frame.op === op))
    .map((frame) => (JSON.parse(frame.text) as { d: unknown }).d)

/** A snowflake whose shard is `shard` of `count`: (id >> 22) % count. */
const guildOn = (shard: number, count: number) => String((BigInt(count * 1000 + shard) << 22n) | 12345n)

describe("typed gateway commands", () => {
  it.effect("intents as a list of GatewayIntentBits identify with their bitfield; presence rides along", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      yield* startShard({
        intents: [
          GatewayIntentBits.Guilds,
          GatewayIntentBits.GuildMessages,
          GatewayIntentBits.MessageContent,
        ],
        presence,
      })
      const [identify] = written(gateway, 2) as Array<{ intents: number; presence: unknown }>
      assert.strictEqual(identify!.intents, 1 | 512 | 32768)
      assert.deepStrictEqual(identify!.presence, presence)
    }).pipe(Effect.provide(env)),
  )

  it.effect("a bitfield is sent as it is", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      yield* startShard({ intents: 513 })
      assert.deepStrictEqual(
        (written(gateway, 2) as Array<{ intents: number }>).map((d) => d.intents),
        [513],
      )
      assert.strictEqual(Intents.bitfield([]), 0)
    }).pipe(Effect.provide(env)),
  )

  it("intents from text: a bitfield or bit names; an unknown name is refused", () => {
    assert.strictEqual(Intents.parse("513"), 513)
    assert.strictEqual(Intents.parse("Guilds, GuildMessages"), 513)
    assert.strictEqual(Intents.parse("GuildMembers"), 2)
    assert.isUndefined(Intents.parse("Guilds,Bogus"))
    assert.isUndefined(Intents.parse("1,2"), "bit values are not names")
    assert.isUndefined(Intents.parse(""))
  })

  it.effect("a shard sends presence (op 3), voice state (op 4) and soundboard requests (op 31)", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const shard = yield* startShard()
      yield* shard.updatePresence(presence)
      yield* shard.updateVoiceState({ guild_id: "42", channel_id: "7", self_mute: false, self_deaf: true })
      const sounds = yield* Effect.forkChild(shard.requestSoundboardSounds({ guildIds: ["42", "43", "42"] }))
      yield* Settle.settle
      assert.deepStrictEqual(
        server.commands().map((c) => ({ op: c.op, d: c.d })),
        [
          { op: 3, d: presence },
          { op: 4, d: { guild_id: "42", channel_id: "7", self_mute: false, self_deaf: true } },
          { op: 31, d: { guild_ids: ["42", "43"] } },
        ],
      )
      // one answer per guild, no nonce: the request waits for both
      yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: "43", soundboard_sounds: [] })
      yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: "41", soundboard_sounds: [] })
      yield* Settle.settle
      assert.isUndefined(sounds.pollUnsafe())
      yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: "42", soundboard_sounds: [] })
      assert.deepStrictEqual(
        (yield* Fiber.join(sounds)).map((answer) => answer.guild_id),
        ["43", "42"],
      )
    }).pipe(Effect.provide(env)),
  )

  it.effect("a guild that never answers a soundboard request: a typed timeout naming it", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const shard = yield* startShard()
      const sounds = yield* Effect.forkChild(
        Effect.flip(shard.requestSoundboardSounds({ guildIds: ["42", "43"], timeout: "5 seconds" })),
      )
      yield* Settle.settle
      yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: "42", soundboard_sounds: [] })
      yield* Settle.advance(5_000)
      const error = yield* Fiber.join(sounds)
      assert.strictEqual(error._tag, "SoundboardSoundsTimeout")
      assert.deepStrictEqual(error._tag === "SoundboardSoundsTimeout" ? error.missing : [], ["43"])

      // a shard that stops for good ends a waiting request at once
      const waiting = yield* Effect.forkChild(
        Effect.flip(shard.requestSoundboardSounds({ guildIds: ["44"] })),
      )
      yield* Settle.settle
      yield* shard.logout
      assert.strictEqual((yield* Fiber.join(waiting))._tag, "ShardStopped")
    }).pipe(Effect.provide(env)),
  )

  it.effect("the last presence set is the one a new session identifies with", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const gateway = yield* MemoryTransport.MemoryTransport
      const shard = yield* startShard({ presence })
      const away = { ...presence, status: PresenceUpdateStatus.DoNotDisturb, activities: [] }
      yield* shard.updatePresence(away)
      yield* server.invalidSession(false) // the session is gone: the shard identifies afresh
      yield* Settle.advance(10_000)
      const identifies = written(gateway, 2) as Array<{ presence: unknown }>
      assert.strictEqual(identifies.length, 2)
      assert.deepStrictEqual(
        identifies.map((d) => d.presence),
        [presence, away],
      )
    }).pipe(Effect.provide(env)),
  )

  it.effect("RATE_LIMITED fails the member request it names (by nonce), not another one", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const shard = yield* startShard()
      const first = yield* Effect.forkChild(shard.requestGuildMembers({ guildId: "41", userIds: ["1"] }))
      yield* Settle.settle
      yield* server.rateLimitMemberRequests(12.5)
      const second = yield* Effect.forkChild(
        Effect.flip(shard.requestGuildMembers({ guildId: "42", query: "", limit: 0 })),
      )
      yield* Settle.settle
      const error = yield* Fiber.join(second)
      assert.strictEqual(error._tag, "GuildMembersRateLimited")
      assert.deepInclude(error, { guildId: "42", retryAfterSeconds: 12.5 })
      // the first request is still waiting for its chunk, and gets it
      assert.isUndefined(first.pollUnsafe())
      const nonce = (server.commands()[0]!.d as { nonce: string }).nonce
      yield* server.emit("GUILD_MEMBERS_CHUNK", {
        guild_id: "41",
        nonce,
        members: [],
        not_found: ["1"],
        chunk_index: 0,
        chunk_count: 1,
      })
      const result = yield* Fiber.join(first)
      assert.deepStrictEqual(result.notFound, ["1"])
    }).pipe(Effect.provide(env)),
  )

  it.effect(
    "the manager broadcasts presence or sends it to one shard; routes voice, members, soundboard",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        const manager = yield* ShardManager.make({
          token,
          intents: [GatewayIntentBits.Guilds],
          gatewayBot: {
            url: "memory://gateway",
            shards: 3,
            session_start_limit: {
              total: 1000,
              remaining: 1000,
              reset_after: 86_400_000,
              max_concurrency: 3,
            },
          },
        })
        yield* Settle.settle
        const ops = (shardId: number) => server.commands(shardId).map((c) => c.op)

        yield* manager.updatePresence(presence)
        yield* Settle.settle
        assert.deepStrictEqual([ops(0), ops(1), ops(2)], [[3], [3], [3]])

        yield* manager.updatePresence(presence, { shardId: 1 })
        yield* manager.updateVoiceState({
          guild_id: guildOn(2, 3),
          channel_id: null,
          self_mute: false,
          self_deaf: false,
        })
        const sounds = yield* Effect.forkChild(
          manager.requestSoundboardSounds({ guildIds: [guildOn(0, 3), guildOn(2, 3), guildOn(0, 3)] }),
        )
        yield* server.rateLimitMemberRequests(1, 1)
        const members = yield* Effect.flip(
          manager.requestGuildMembers({ guildId: guildOn(1, 3), userIds: ["5"] }),
        )
        yield* Settle.settle
        assert.deepStrictEqual(
          [ops(0), ops(1), ops(2)],
          [
            [3, 31],
            [3, 3, 8],
            [3, 4, 31],
          ],
        )
        assert.deepStrictEqual(server.commands(0)[1]!.d, { guild_ids: [guildOn(0, 3)] })
        assert.deepStrictEqual(server.commands(2)[2]!.d, { guild_ids: [guildOn(2, 3)] })
        yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: guildOn(2, 3), soundboard_sounds: [] }, 2)
        yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: guildOn(0, 3), soundboard_sounds: [] }, 0)
        assert.sameMembers(
          (yield* Fiber.join(sounds)).map((answer) => answer.guild_id),
          [guildOn(0, 3), guildOn(2, 3)],
        )
        assert.strictEqual(members._tag, "GuildMembersRateLimited")

        yield* manager.stop(2)
        const notRunning = yield* Effect.flip(manager.updatePresence(presence, { shardId: 2 }))
        assert.strictEqual(notRunning._tag, "ShardNotRunning")
      }).pipe(Effect.provide(env)),
  )
})
