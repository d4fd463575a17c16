/**
 * DiscordProvider's lifecycle under TestClock, against the in-memory scripted gateway: every
 * wait (the 5 s identify buckets included) is exact, so these tests neither take real
 * seconds nor race a timeout. Real sockets are covered in Provider.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Intents, SessionStore } from "@vigil/gateway"
import * as MemoryTransport from "@vigil/gateway/testing/MemoryTransport"
import * as ScriptedGateway from "@vigil/gateway/testing/ScriptedGateway"
import * as Settle from "@vigil/gateway/testing/Settle"
import { DiscordProvider, Health } from "@vigil/provider"
import * as FakeRest from "@vigil/testing/FakeRest"
import * as Traffic from "@vigil/testing/Traffic"
import { PresenceUpdateStatus } from "discord-api-types/v10"
import { Cause, Context, Effect, Exit, Fiber, Layer, Redacted, Schedule, Scope, Stream } from "effect"
import { HttpClient } from "effect/http"

const token = "lifecycle-test-token-SECRET"

/** `GET /gateway/bot`'s answer, given in the config: one identify per 5 s for the whole bot. */
const gatewayBot = {
  url: "memory://gateway",
  shards: 2,
  session_start_limit: { total: 1000, remaining: 1000, reset_after: 86_400_000, max_concurrency: 1 },
}

const configWith = (
  overrides: Partial<DiscordProvider.ProviderConfig> = {},
): DiscordProvider.ProviderConfig => ({
  token: Redacted.make(token),
  intents: 513,
  gatewayBot,
  policy: { backoffBaseMillis: 1_000, backoffMaxMillis: 5_000 },
  ...overrides,
})

/** The bot as READY names it (ScriptedGateway's) and as `GET /users/@me` answers it. */
const bot = { id: "1", username: "vigil" }

/** The REST API a start asks who the bot is; `GET /gateway/bot` hangs (a test stuck there on purpose). */
class Rest extends Context.Service<Rest, FakeRest.Handler>()("test/Rest") {}

const restLayer = Layer.effect(Rest)(Effect.sync(() => FakeRest.handler({ token, bot })))

const httpClient = Layer.effect(HttpClient.HttpClient)(
  Effect.gen(function* () {
    const rest = yield* Rest
    return HttpClient.make((request, url) =>
      url.pathname.endsWith("/gateway/bot") ? Effect.never : rest.client.execute(request),
    )
  }),
)

const env = () =>
  Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer(),
    SessionStore.SessionStore.layerMemory,
    httpClient.pipe(Layer.provideMerge(restLayer)),
  )

/** A provider in a scope of its own, so a test can shut it down. */
const provider = (config: DiscordProvider.ProviderConfig) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const discord = yield* DiscordProvider.make(config).pipe(Scope.provide(scope))
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return { discord, scope }
  })

/** Moves the clock a second at a time until `effect` is done (at most `limit` ms of it). */
const within = <A, E>(effect: Effect.Effect<A, E>, limit = 60_000) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(effect)
    yield* Settle.settle
    for (let waited = 0; fiber.pollUnsafe() === undefined; waited += 1_000) {
      if (waited >= limit) return yield* Effect.die(new Error(`not done within ${limit} ms of clock time`))
      yield* Settle.advance(1_000)
    }
    return yield* Fiber.join(fiber)
  })

const ready = (discord: DiscordProvider.DiscordProviderService) => within(discord.awaitReady)

/** The intents of every Identify the server received, in order. */
const identifiedIntents = (gateway: MemoryTransport.MemoryGateway) =>
  gateway
    .peers()
    .flatMap((peer) => peer.sent.filter((frame) => frame.op === 2))
    .map((frame) => (JSON.parse(frame.text) as { d: { intents: number } }).d.intents)

const closeCodes = (gateway: MemoryTransport.MemoryGateway) =>
  gateway.peers().map((peer) => peer.clientCloseCode())

describe("DiscordProvider lifecycle (TestClock)", () => {
  it.effect(
    "start: every shard ready; stop ends the sessions (1000); a new start waits for the identify buckets",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord } = yield* provider(configWith())
        assert.strictEqual((yield* discord.health).state, "Stopped")
        yield* discord.start
        yield* discord.start // already running: nothing happens
        yield* ready(discord)
        const health = yield* discord.health
        assert.strictEqual(health.state, "Running")
        assert.strictEqual(health.generation, 1)
        assert.strictEqual(Health.verdict(health), "up")
        assert.deepStrictEqual(health.botUser, { id: "1", username: "vigil" })
        assert.deepStrictEqual(
          health.shards.map((s) => [s.shardId, s.shardCount, s.state._tag, s.identifies, s.reconnects]),
          [
            [0, 2, "Ready", 1, 0],
            [1, 2, "Ready", 1, 0],
          ],
        )
        assert.strictEqual(gateway.openCount(), 2)

        yield* discord.stop()
        assert.strictEqual(gateway.openCount(), 0, "no socket after stop")
        assert.deepStrictEqual(closeCodes(gateway), [1000, 1000])
        const stopped = yield* discord.health
        assert.strictEqual(stopped.state, "Stopped")
        assert.deepStrictEqual(stopped.shards, [])
        assert.strictEqual(Health.verdict(stopped), "down")

        yield* discord.start
        yield* ready(discord)
        assert.strictEqual((yield* discord.health).generation, 2)
        // One bucket (max_concurrency 1), kept across generations: identifies 5 s apart, never faster.
        const times = server.allIdentifies().map((i) => i.at)
        assert.strictEqual(times.length, 4)
        for (let i = 1; i < times.length; i++)
          assert.isAtLeast(times[i]! - times[i - 1]!, 5_000, times.join(","))
        assert.isAtMost(gateway.maxOpenCount(), 2, "never more sockets than shards")
      }).pipe(Effect.provide(env())),
  )

  it.effect("stop keeping the sessions: closed resumably (4900); the next start resumes, no identify", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const gateway = yield* MemoryTransport.MemoryTransport
      const { discord } = yield* provider(configWith())
      yield* discord.start
      yield* ready(discord)
      yield* discord.stop({ session: "keep" })
      assert.strictEqual(gateway.openCount(), 0)
      assert.deepStrictEqual(closeCodes(gateway), [4900, 4900])
      yield* discord.start
      yield* ready(discord)
      assert.strictEqual(server.allIdentifies().length, 2)
      assert.deepStrictEqual([server.resumes(0), server.resumes(1)], [1, 1])
    }).pipe(Effect.provide(env())),
  )

  it.effect(
    "reload with new intents: the old sessions end (1000) before new sockets open; one socket per shard",
    () =>
      Effect.gen(function* () {
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord } = yield* provider(configWith())
        yield* discord.start
        yield* ready(discord)
        const intents = 513 | (1 << 15)
        yield* within(discord.reload(configWith({ intents })))
        yield* ready(discord)
        assert.deepStrictEqual(closeCodes(gateway), [1000, 1000, undefined, undefined])
        assert.deepStrictEqual(identifiedIntents(gateway), [513, 513, intents, intents])
        assert.isAtMost(gateway.maxOpenCount(), 2, "the old sockets were gone before the new ones opened")
        assert.strictEqual(gateway.openCount(), 2)
        assert.strictEqual((yield* discord.health).generation, 2)
        assert.strictEqual((yield* discord.config).intents, intents)
      }).pipe(Effect.provide(env())),
  )

  it.effect("reload that keeps token, intents and shards resumes the sessions (no identify spent)", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const gateway = yield* MemoryTransport.MemoryTransport
      const { discord } = yield* provider(configWith({ shardCount: 2 }))
      yield* discord.start
      yield* ready(discord)
      yield* within(discord.reload(configWith({ shardCount: 2, largeThreshold: 100 })))
      yield* ready(discord)
      assert.strictEqual(server.allIdentifies().length, 2)
      assert.deepStrictEqual([server.resumes(0), server.resumes(1)], [1, 1])
      assert.deepStrictEqual(closeCodes(gateway), [4900, 4900, undefined, undefined])
      assert.isAtMost(gateway.maxOpenCount(), 2)
    }).pipe(Effect.provide(env())),
  )

  it.effect("reload with the same intents written as a list of bits resumes the sessions", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const { discord } = yield* provider(configWith({ shardCount: 2 }))
      yield* discord.start
      yield* ready(discord)
      const { Guilds, GuildMessages } = Intents.GatewayIntentBits
      yield* within(discord.reload(configWith({ shardCount: 2, intents: [Guilds, GuildMessages] })))
      yield* ready(discord)
      assert.strictEqual(server.allIdentifies().length, 2)
      assert.deepStrictEqual([server.resumes(0), server.resumes(1)], [1, 1])
    }).pipe(Effect.provide(env())),
  )

  it.effect("gateway commands go to the running shards; before start they fail with GatewayNotRunning", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const { discord } = yield* provider(configWith({ shardCount: 2 }))
      const presence = { since: null, activities: [], status: PresenceUpdateStatus.Idle, afk: true }
      const early = yield* Effect.flip(discord.updatePresence(presence))
      assert.strictEqual(early._tag, "GatewayNotRunning")
      assert.include(early.message, "updatePresence")
      yield* discord.start
      yield* ready(discord)
      yield* discord.updatePresence(presence)
      // guild 1 << 22 is on shard 1 of 2
      const guildOnShard1 = String(1n << 22n)
      yield* discord.updateVoiceState({
        guild_id: guildOnShard1,
        channel_id: "5",
        self_mute: true,
        self_deaf: false,
      })
      const sounds = yield* Effect.forkChild(discord.requestSoundboardSounds({ guildIds: [guildOnShard1] }))
      yield* Settle.settle
      yield* server.rateLimitMemberRequests(3, 1)
      const limited = yield* Effect.flip(discord.requestGuildMembers({ guildId: guildOnShard1, query: "" }))
      assert.strictEqual(limited._tag, "GuildMembersRateLimited")
      yield* Settle.settle
      assert.deepStrictEqual(
        [server.commands(0).map((c) => c.op), server.commands(1).map((c) => c.op)],
        [[3], [3, 4, 31, 8]],
      )
      yield* server.emit("SOUNDBOARD_SOUNDS", { guild_id: guildOnShard1, soundboard_sounds: [] }, 1)
      assert.deepStrictEqual(
        (yield* Fiber.join(sounds)).map((answer) => answer.guild_id),
        [guildOnShard1],
      )
    }).pipe(Effect.provide(env())),
  )

  it.effect(
    "reload while the shards reconnect (links dropped, server unreachable): no stale socket, all ready",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord } = yield* provider(configWith())
        yield* discord.start
        yield* ready(discord)
        for (let i = 0; i < 4; i++) yield* gateway.failNextConnect("network down")
        yield* server.drop(0)
        yield* server.drop(1)
        yield* Settle.settle
        const reconnecting = (yield* discord.health).shards.map((s) => s.state._tag)
        assert.isTrue(
          reconnecting.every((tag) => tag !== "Ready"),
          reconnecting.join(","),
        )
        yield* within(discord.reload(configWith({ intents: 1 })))
        yield* ready(discord)
        assert.isAtMost(gateway.maxOpenCount(), 2)
        assert.strictEqual(gateway.openCount(), 2)
        assert.deepStrictEqual(identifiedIntents(gateway).slice(-2), [1, 1])
      }).pipe(Effect.provide(env())),
  )

  it.effect("many concurrent reloads are serialized: one generation at a time, the last config wins", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const { discord } = yield* provider(configWith())
      yield* discord.start
      yield* ready(discord)
      yield* within(
        Effect.forEach([1, 2, 3, 4, 5], (intents) => discord.reload(configWith({ intents })), {
          concurrency: "unbounded",
          discard: true,
        }),
      )
      yield* ready(discord)
      assert.strictEqual((yield* discord.health).generation, 6)
      assert.strictEqual((yield* discord.config).intents, 5)
      assert.isAtMost(gateway.maxOpenCount(), 2, "never two sockets for one shard")
      assert.strictEqual(gateway.openCount(), 2)
      assert.deepStrictEqual(identifiedIntents(gateway).slice(-2), [5, 5])
    }).pipe(Effect.provide(env())),
  )

  it.effect(
    "shutdown during a start stuck in GET /gateway/bot: it and the reload queued behind it are refused",
    () =>
      Effect.gen(function* () {
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord, scope } = yield* provider(configWith({ gatewayBot: undefined }))
        const starting = yield* Effect.forkChild(Effect.exit(discord.start))
        const reloading = yield* Effect.forkChild(Effect.exit(discord.reload(configWith({ intents: 7 }))))
        yield* Settle.settle
        assert.strictEqual((yield* discord.health).state, "Starting")
        yield* Scope.close(scope, Exit.void)
        for (const fiber of [starting, reloading]) {
          const exit = yield* Fiber.join(fiber)
          assert.isTrue(Exit.isFailure(exit))
          if (Exit.isFailure(exit)) {
            assert.strictEqual(
              (Cause.squash(exit.cause) as { readonly _tag?: string })._tag,
              "ProviderClosed",
            )
          }
        }
        const late = yield* Effect.flip(discord.reload(configWith({ intents: 9 })))
        assert.strictEqual(late._tag, "ProviderClosed")
        assert.strictEqual((yield* discord.health).state, "Closed")
        yield* discord.stop() // a no-op after shutdown
        assert.deepStrictEqual(gateway.connectAttempts(), [], "nothing ever connected")
      }).pipe(Effect.provide(env())),
  )

  it.effect("a reload, then shutdown: the new generation is closed too, its sessions kept resumable", () =>
    Effect.gen(function* () {
      const gateway = yield* MemoryTransport.MemoryTransport
      const { discord, scope } = yield* provider(configWith())
      yield* discord.start
      yield* ready(discord)
      yield* within(discord.reload(configWith({ intents: 7 })))
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(gateway.openCount(), 0)
      assert.deepStrictEqual(closeCodes(gateway).slice(-2), [4900, 4900], "app shutdown keeps the sessions")
      const attempts = gateway.connectAttempts().length
      yield* Settle.advance(60_000)
      assert.strictEqual(gateway.connectAttempts().length, attempts, "no connection after shutdown")
    }).pipe(Effect.provide(env())),
  )

  it.effect("a shutdown while backing off: nothing is left, nothing reconnects later", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const gateway = yield* MemoryTransport.MemoryTransport
      const { discord, scope } = yield* provider(configWith())
      yield* discord.start
      yield* ready(discord)
      for (let i = 0; i < 10; i++) yield* gateway.failNextConnect("network down")
      yield* server.drop(0)
      yield* server.drop(1)
      yield* Settle.advance(500)
      assert.isTrue((yield* discord.health).shards.some((s) => s.state._tag === "BackingOff"))
      yield* Scope.close(scope, Exit.void)
      const attempts = gateway.connectAttempts().length
      yield* Settle.advance(120_000)
      assert.strictEqual(gateway.connectAttempts().length, attempts)
      assert.strictEqual(gateway.openCount(), 0)
    }).pipe(Effect.provide(env())),
  )
})

describe("DiscordProvider: who the bot is (TestClock)", () => {
  const oneShard = configWith({ gatewayBot: { ...gatewayBot, shards: 1 } })
  const restPaths = Effect.gen(function* () {
    const requests = yield* (yield* Rest).requests
    return requests.map((r) => `${r.method} ${r.path} ${r.status}`)
  })

  it.effect(
    "a restarted process resumes (no READY): GET /users/@me names the bot; ready, its own messages skipped, replayed ones too",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        const rest = yield* Rest
        // The first process: identifies, then shuts down keeping its session (the shared store keeps it).
        const first = yield* provider(oneShard)
        yield* first.discord.start
        yield* ready(first.discord)
        yield* Scope.close(first.scope, Exit.void)

        const someone = Traffic.messageCreate(1)
        const own = (n: number) => ({ ...Traffic.messageCreate(n), author: { ...someone.author, ...bot } })
        // Sent while no process runs: replayed on resume, while GET /users/@me is still being
        // retried (a 503 first), so before the bot is known.
        yield* server.emit("MESSAGE_CREATE", own(2))
        yield* server.emit("MESSAGE_CREATE", someone)
        yield* rest.failNext({ status: 503 })

        const { discord } = yield* provider(oneShard)
        const messages: Array<string> = []
        yield* Effect.forkChild(
          Stream.runForEach(discord.messages, (m) =>
            Effect.sync(() => messages.push(m._tag === "MessageCreated" ? m.id : m._tag)),
          ),
        )
        yield* Settle.settle
        yield* within(discord.start)
        yield* ready(discord)
        assert.strictEqual(server.allIdentifies().length, 1, "the second process identified")
        assert.strictEqual(server.resumes(0), 1)
        const health = yield* discord.health
        assert.deepStrictEqual(health.botUser, bot)
        assert.isTrue(health.ready)

        yield* server.emit("MESSAGE_CREATE", own(3))
        yield* server.emit("MESSAGE_CREATE", Traffic.messageCreate(4))
        yield* Settle.settle
        assert.deepStrictEqual(
          messages,
          [someone.id, Traffic.messageCreate(4).id],
          "the bot's own messages skipped, the replayed one too",
        )
        assert.deepStrictEqual((yield* discord.health).inbound, { messages: 2, malformed: 0, ownSkipped: 2 })
        assert.deepStrictEqual(yield* restPaths, [
          "GET /users/@me 200",
          "GET /users/@me 503",
          "GET /users/@me 200",
        ])
      }).pipe(Effect.provide(env())),
  )

  it.effect(
    "a token refused at GET /users/@me: start fails with AuthenticationFailed; the shards begun are closed again",
    () =>
      Effect.gen(function* () {
        const rest = yield* Rest
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord } = yield* provider(oneShard)
        yield* rest.failNext({ status: 401 })
        const error = yield* Effect.flip(within(discord.start))
        assert.strictEqual(error._tag, "AuthenticationFailed")
        if (error._tag === "AuthenticationFailed") {
          assert.strictEqual(error.code, 401)
          assert.include(error.reason, "/users/@me")
        }
        assert.notInclude(error.message, "SECRET")
        const health = yield* discord.health
        assert.strictEqual(health.state, "Stopped")
        assert.strictEqual(health.startError?.tag, "AuthenticationFailed")
        assert.isUndefined(health.botUser)
        assert.deepStrictEqual(health.shards, [])
        assert.strictEqual(gateway.openCount(), 0, "no socket left")
        // The token accepted again: the next start asks again, and runs.
        yield* discord.start
        yield* ready(discord)
        assert.deepStrictEqual(yield* restPaths, ["GET /users/@me 401", "GET /users/@me 200"])
      }).pipe(Effect.provide(env())),
  )

  it.effect(
    "GET /users/@me failing: retried by the REST client; lasting, start fails with BotUserUnavailable",
    () =>
      Effect.gen(function* () {
        const rest = yield* Rest
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord } = yield* provider(oneShard)
        yield* rest.failNext({ status: 503, count: 4 }) // the first try and the 3 retries
        const error = yield* Effect.flip(within(discord.start))
        assert.strictEqual(error._tag, "BotUserUnavailable")
        assert.include(error.message, "503")
        assert.strictEqual((yield* discord.health).state, "Stopped")
        assert.strictEqual(gateway.openCount(), 0, "no socket left")
        yield* rest.failNext({ status: 503 })
        yield* within(discord.start)
        yield* ready(discord)
        assert.deepStrictEqual((yield* discord.health).botUser, bot)
        assert.deepStrictEqual(yield* restPaths, [
          ...Array.from({ length: 4 }, () => "GET /users/@me 503"),
          "GET /users/@me 503",
          "GET /users/@me 200",
        ])
      }).pipe(Effect.provide(env())),
  )

  it.effect("asked once per bot: not again by a stop and start or a reload, again for another token", () =>
    Effect.gen(function* () {
      const { discord } = yield* provider(oneShard)
      yield* discord.start
      yield* ready(discord)
      yield* discord.stop({ session: "keep" })
      yield* discord.start
      yield* within(discord.reload({ ...oneShard, intents: 1 }))
      yield* ready(discord)
      assert.deepStrictEqual(yield* restPaths, ["GET /users/@me 200"])
      const error = yield* Effect.flip(
        within(discord.reload({ ...oneShard, token: Redacted.make("another-bot-SECRET") })),
      )
      assert.strictEqual(error._tag, "AuthenticationFailed", "the fake knows no other bot")
      assert.isUndefined((yield* discord.health).botUser, "the other bot is not this one")
      assert.deepStrictEqual(yield* restPaths, ["GET /users/@me 200", "GET /users/@me 401"])
    }).pipe(Effect.provide(env())),
  )
})

describe("DiscordProvider health (TestClock)", () => {
  it.effect(
    "health stream: a dropped link shows as a reconnect, then a resume, with the error counted by tag",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        const gateway = yield* MemoryTransport.MemoryTransport
        const { discord } = yield* provider(configWith({ gatewayBot: { ...gatewayBot, shards: 1 } }))
        const seen: Array<string> = []
        yield* Effect.forkChild(
          Stream.runForEach(discord.healthChanges(), (h) =>
            Effect.sync(() => void seen.push(`${h.state}:${h.shards.map((s) => s.state._tag).join(",")}`)),
          ),
        )
        yield* Settle.settle
        yield* discord.start
        yield* ready(discord)
        yield* gateway.failNextConnect("network down") // the first reconnect fails: a backoff to see
        yield* server.drop(0)
        yield* within(
          Effect.repeat(discord.health, {
            until: (h) => h.shards[0]?.resumes === 1 && h.shards[0].state._tag === "Ready",
            schedule: Schedule.spaced(100),
          }),
        )
        yield* Settle.advance(60_000) // a heartbeat round trip or more
        const shard = (yield* discord.health).shards[0]!
        assert.isDefined(shard.latencyMillis, "a heartbeat round trip measured")
        assert.strictEqual(shard.reconnects, 2, "the failed attempt and the resume")
        assert.strictEqual(shard.resumes, 1)
        assert.deepStrictEqual(
          shard.errors,
          { ServerClosed: 1, TransportError: 1 },
          "the drop (1006), the failed open",
        )
        assert.strictEqual(seen[0], "Stopped:")
        const readyAt = seen.indexOf("Running:Ready")
        assert.isAtLeast(readyAt, 1)
        assert.include(
          seen.slice(readyAt),
          "Running:BackingOff",
          `the reconnect is visible: ${seen.join(" ")}`,
        )
        assert.strictEqual(seen.at(-1), "Running:Ready")
        // Periodic snapshots too, for the counters.
        const ticks = yield* within(
          Stream.runCollect(Stream.take(discord.healthChanges({ every: "1 second" }), 3)),
        )
        assert.lengthOf(ticks, 3)
      }).pipe(Effect.provide(env())),
  )
})

describe("DiscordProvider configuration (TestClock)", () => {
  it.effect("shard options reach the shards whole: maxMessageBytes refuses a larger message", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const { discord } = yield* provider(
        configWith({ gatewayBot: { ...gatewayBot, shards: 1 }, maxMessageBytes: 4_096 }),
      )
      yield* discord.start
      yield* ready(discord)
      yield* server.emit("MESSAGE_CREATE", { id: "1", channel_id: "2", content: "x".repeat(8_000) })
      yield* Settle.settle
      const shard = (yield* discord.health).shards[0]!
      assert.strictEqual(shard.lastError?.tag, "DecodeError", JSON.stringify(shard.lastError))
      assert.include(shard.lastError?.message ?? "", "4096")
    }).pipe(Effect.provide(env())),
  )
})
