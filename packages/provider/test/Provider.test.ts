/**
 * DiscordProvider over real sockets on 127.0.0.1: FakeGateway (ws, GET /gateway/bot and,
 * through FakeRest's handler, POST /channels/{id}/messages at the same address), Vigil's
 * Node transport wrapped in a socket counter. Real time, short heartbeat intervals. The
 * lifecycle's timing (identify buckets, reloads, shutdowns) is in Lifecycle.test.ts, under
 * TestClock.
 */
import { type AddressInfo, createServer } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Protocol, SessionStore } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import { DiscordProvider, Health } from "@vigil/provider"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Invariants from "@vigil/testing/Invariants"
import * as Recording from "@vigil/testing/Recording"
import * as Traffic from "@vigil/testing/Traffic"
import { ConfigProvider, Effect, Fiber, Layer, Redacted, Result, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

const token = "provider-test-token-SECRET-xyz"
const botId = "1000000000000000001"

const fakeGateway = (overrides: Partial<FakeGateway.Config> = {}) =>
  FakeGateway.make({
    token,
    heartbeatInterval: 250,
    shards: 2,
    maxConcurrency: 16,
    identifyWindow: "10 millis",
    ...overrides,
  })

/** A provider with a per-test socket counter. */
const provider = (config: DiscordProvider.ProviderConfig) =>
  Effect.gen(function* () {
    const sockets = Invariants.countSockets(NodeTransport.make())
    const env = Layer.mergeAll(sockets.layer, SessionStore.SessionStore.layerMemory, FetchHttpClient.layer)
    const discord = yield* DiscordProvider.make(config).pipe(Effect.provide(env))
    return { discord, sockets }
  })

const configFor = (
  gateway: FakeGateway.FakeGatewayService,
  overrides: Partial<DiscordProvider.ProviderConfig> = {},
): DiscordProvider.ProviderConfig => ({
  token: Redacted.make(token),
  intents: 513,
  apiBaseUrl: gateway.httpUrl,
  policy: { backoffBaseMillis: 50, backoffMaxMillis: 200 },
  logoutTimeout: "2 seconds",
  ...overrides,
})

// Each test here starts once per bot (no wait for an identify bucket): ready comes within
// a few hundred ms; the margin is for a loaded machine.
const ready = (discord: DiscordProvider.DiscordProviderService) =>
  discord.awaitReady.pipe(Effect.timeout("20 seconds"), Effect.orDie)

describe("DiscordProvider over real sockets", () => {
  it.live(
    "reshard: delegates to the running manager; the same events stream goes on; refused when not running",
    () =>
      Effect.gen(function* () {
        const guilds = Traffic.guildIds(8, 8)
        const gateway = yield* fakeGateway({ guilds })
        const { discord } = yield* provider(configFor(gateway))
        const idle = yield* Effect.flip(discord.reshard(4))
        assert.strictEqual(idle._tag, "GatewayNotRunning")
        const counts: Array<number> = []
        yield* Effect.forkScoped(
          Stream.runForEach(discord.events, (e) => Effect.sync(() => void counts.push(e.shardCount))),
        )
        yield* discord.start
        yield* ready(discord)
        yield* discord.reshard(4)
        assert.deepStrictEqual(
          (yield* discord.health).shards.map((s) => `${s.shardId} ${s.state._tag}`),
          ["0 Ready", "1 Ready", "2 Ready", "3 Ready"],
        )
        yield* gateway.dispatchToGuild(guilds[3]!, "TYPING_START", { guild_id: guilds[3] })
        yield* eventually(() => counts.at(-1) === 4, "an event of the new count")
        yield* discord.stop()
      }),
  )

  it.live("start: every shard ready; stop: sessions ended (1000), no socket left on either side", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const { discord, sockets } = yield* provider(configFor(gateway))
      yield* discord.start
      yield* ready(discord)
      assert.deepStrictEqual(
        (yield* discord.health).shards.map((s) => s.state._tag),
        ["Ready", "Ready"],
      )
      assert.strictEqual(sockets.open(), 2)
      yield* discord.stop()
      assert.strictEqual(sockets.open(), 0, "no client socket after stop")
      yield* eventually(
        Effect.map(gateway.openSockets, (n) => n === 0),
        "the server sees every socket closed",
      )
      assert.deepStrictEqual(
        Recording.clientCloses(yield* gateway.entries).map((c) => c.code),
        [1000, 1000],
      )
      assert.isTrue(
        (yield* gateway.sessions).every((s) => !s.resumable),
        "no session left behind",
      )
    }),
  )
})

describe("DiscordProvider errors and health", () => {
  it.live("start retries GET /gateway/bot and logs each failure with its cause as it happens", () =>
    Effect.gen(function* () {
      const logs = Invariants.capture()
      // A port just closed: every try is refused at once.
      const port = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) => {
            const server = createServer().listen(0, "127.0.0.1", () => {
              const { port } = server.address() as AddressInfo
              server.close(() => resolve(port))
            })
          }),
      )
      const { discord } = yield* provider({
        token: Redacted.make(token),
        intents: 513,
        apiBaseUrl: `http://127.0.0.1:${port}/api/v10`,
        startRetries: 2,
      })
      const error = yield* Effect.flip(discord.start.pipe(Effect.provide(logs.layer)))
      assert.strictEqual(error._tag, "GatewayInfoError")
      const failures = logs.texts().filter((t) => t.startsWith("Warn") && t.includes("/gateway/bot"))
      assert.strictEqual(failures.length, 3, logs.texts().join("\n")) // the first try and 2 retries
      assert.deepStrictEqual(
        failures.map((f) => f.match(/try \d of \d/)?.[0]),
        ["try 1 of 3", "try 2 of 3", "try 3 of 3"],
      )
      for (const failure of failures) {
        assert.include(failure, "could not be reached (connect ECONNREFUSED")
        assert.notInclude(failure, "SECRET")
      }
    }),
  )

  it.live(
    "the gateway refusing the token (4004): await fails with AuthenticationFailed; a reload recovers",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway({ shards: 1 })
        const { discord } = yield* provider(configFor(gateway))
        yield* discord.start
        yield* ready(discord)
        yield* gateway.close("all", 4004)
        const error = yield* Effect.flip(discord.await.pipe(Effect.timeout("20 seconds")))
        assert.strictEqual(error._tag, "AuthenticationFailed")
        assert.notInclude(error.message, "SECRET")
        const health = yield* discord.health
        assert.strictEqual(health.fatal?.tag, "AuthenticationFailed")
        assert.strictEqual(Health.verdict(health), "down")
        yield* discord.reload(configFor(gateway))
        yield* ready(discord)
        assert.isUndefined((yield* discord.health).fatal)
      }),
  )

  it.live(
    "GET /gateway/bot refusing the token: start fails with AuthenticationFailed; the provider stays stopped",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway()
        const { discord, sockets } = yield* provider(
          configFor(gateway, { token: Redacted.make("WRONG-SECRET-token") }),
        )
        const error = yield* Effect.flip(discord.start)
        assert.strictEqual(error._tag, "AuthenticationFailed")
        assert.notInclude(error.message, "SECRET")
        assert.deepStrictEqual(yield* gateway.restRequests, [], "refused before GET /users/@me")
        const health = yield* discord.health
        assert.strictEqual(health.state, "Stopped")
        assert.strictEqual(health.startError?.tag, "AuthenticationFailed")
        assert.strictEqual(sockets.max(), 0)
      }),
  )
})

describe("DiscordProvider inbound", () => {
  it.live(
    "message events decoded and tagged; own messages skipped; a malformed event is reported and the stream goes on",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway({ shards: 1 })
        const { discord } = yield* provider(configFor(gateway))
        const inbound: Array<string> = []
        const messages: Array<string> = []
        yield* Effect.forkChild(
          Stream.runForEach(discord.inbound, (item) =>
            Effect.sync(() =>
              inbound.push(
                Result.isSuccess(item) ? item.success._tag : `${item.failure._tag}:${item.failure.type}`,
              ),
            ),
          ),
        )
        yield* Effect.forkChild(
          Stream.runForEach(discord.messages, (m) => Effect.sync(() => messages.push(m._tag))),
        )
        yield* Effect.sleep(10)
        yield* discord.start
        yield* ready(discord)
        const someone = { ...Traffic.messageCreate(1), mentions: [{ id: botId, username: "bot" }] }
        const own = {
          ...Traffic.messageCreate(2),
          author: { id: botId, username: "vigil-fake-bot", bot: true },
        }
        const { author: _, ...noAuthor } = Traffic.messageCreate(3)
        yield* gateway.dispatch("all", "MESSAGE_CREATE", someone)
        yield* gateway.dispatch("all", "MESSAGE_CREATE", own)
        yield* gateway.dispatch("all", "MESSAGE_CREATE", noAuthor)
        yield* gateway.dispatch("all", "MESSAGE_UPDATE", { ...Traffic.messageCreate(1), content: "edited" })
        yield* gateway.dispatch("all", "MESSAGE_UPDATE", { ...own, content: "own edit" })
        yield* gateway.dispatch("all", "MESSAGE_DELETE", { id: "5", channel_id: "6", guild_id: "7" })
        yield* gateway.dispatch("all", "MESSAGE_DELETE", { id: 5 })
        yield* gateway.dispatch("all", "TYPING_START", { channel_id: "1" })
        yield* gateway.dispatch("all", "MESSAGE_CREATE", Traffic.messageCreate(4))
        yield* eventually(
          Effect.sync(() => inbound.length === 6),
          "six inbound items",
        )
        assert.deepStrictEqual(inbound, [
          "MessageCreated",
          "MalformedEvent:MESSAGE_CREATE",
          "MessageUpdated",
          "MessageDeleted",
          "MalformedEvent:MESSAGE_DELETE",
          "MessageCreated",
        ])
        assert.deepStrictEqual(messages, [
          "MessageCreated",
          "MessageUpdated",
          "MessageDeleted",
          "MessageCreated",
        ])
        const health = yield* discord.health
        assert.deepStrictEqual(health.inbound, { messages: 4, malformed: 2, ownSkipped: 2 })
      }),
  )

  it.live("message events are decoded only while `messages` or `inbound` has a consumer", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway({ shards: 1 })
      const { discord } = yield* provider(configFor(gateway))
      const events: Array<string> = []
      yield* Effect.forkChild(
        Stream.runForEach(discord.events, (e) =>
          Effect.sync(() => events.push(Protocol.eventName(e.dispatch))),
        ),
      )
      yield* Effect.sleep(10)
      yield* discord.start
      yield* ready(discord)
      yield* gateway.dispatch("all", "MESSAGE_CREATE", Traffic.messageCreate(1))
      yield* eventually(
        Effect.sync(() => events.includes("MESSAGE_CREATE")),
        "the message event",
      )
      assert.strictEqual((yield* discord.health).inbound.messages, 0, "nobody reads messages: not decoded")

      const messages: Array<string> = []
      const reader = yield* Effect.forkChild(
        Stream.runForEach(discord.messages, (m) => Effect.sync(() => messages.push(m._tag))),
      )
      yield* Effect.sleep(10)
      yield* gateway.dispatch("all", "MESSAGE_CREATE", Traffic.messageCreate(2))
      yield* eventually(
        Effect.sync(() => messages.length === 1),
        "the second message decoded",
      )
      assert.strictEqual((yield* discord.health).inbound.messages, 1)

      yield* Fiber.interrupt(reader)
      yield* gateway.dispatch("all", "MESSAGE_CREATE", Traffic.messageCreate(3))
      yield* eventually(
        Effect.sync(() => events.filter((t) => t === "MESSAGE_CREATE").length === 3),
        "the third message event",
      )
      assert.strictEqual((yield* discord.health).inbound.messages, 1, "the reader is gone: not decoded")
    }),
  )

  it.live("decoded fields: ids, author, content, guild, mention of the bot, reply", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway({ shards: 1 })
      const { discord } = yield* provider(configFor(gateway))
      const fiber = yield* Effect.forkChild(Stream.runHead(discord.messages))
      yield* Effect.sleep(10)
      yield* discord.start
      yield* ready(discord)
      yield* gateway.dispatch("all", "MESSAGE_CREATE", {
        ...Traffic.messageCreate(9, { guildId: "42", channelId: "43" }),
        author: { id: "77", username: "ann", global_name: "Ann", bot: false },
        mentions: [{ id: botId }],
        message_reference: { message_id: "99" },
      })
      const first = yield* Fiber.join(fiber)
      assert.isTrue(first._tag === "Some")
      if (first._tag === "Some" && first.value._tag === "MessageCreated") {
        const m = first.value
        assert.strictEqual(m.shardId, 0)
        assert.strictEqual(m.channelId, "43")
        assert.strictEqual(m.guildId, "42")
        assert.deepStrictEqual(m.author, { id: "77", username: "ann", displayName: "Ann", bot: false })
        assert.strictEqual(m.content, "message 9")
        assert.strictEqual(m.replyTo, "99")
        assert.isTrue(m.mentionsBot)
      } else {
        assert.fail("expected MessageCreated")
      }
    }),
  )
})

describe("DiscordProvider send", () => {
  it.live("sends over HTTP to the fake's REST routes, waiting out the bucket: no 429, typed errors", () =>
    Effect.gen(function* () {
      // One fake Discord at one address: /gateway/bot and /channels/{id}/messages both at httpUrl.
      const gateway = yield* fakeGateway({
        shards: 1,
        rest: { messageLimit: { requests: 3, window: "300 millis" } },
      })
      const { discord } = yield* provider(configFor(gateway))
      const started = Date.now()
      const sent = yield* Effect.forEach(
        Array.from({ length: 7 }, (_, i) => i),
        (i) => discord.send("123", `n${i}`),
        { concurrency: "unbounded" },
      )
      const took = Date.now() - started
      assert.strictEqual(sent.length, 7)
      const records = yield* gateway.restRequests
      assert.isTrue(
        records.every((r) => r.status === 200 && r.via === "http"),
        records.map((r) => r.status).join(","),
      )
      assert.isAtLeast(took, 550, "three windows")
      assert.sameMembers(
        (yield* gateway.messages).map((m) => m.content),
        sent.map((m) => m.content),
      )
      yield* gateway.failPosts({ status: 403 })
      const error = yield* Effect.flip(discord.send("123", "nope"))
      assert.strictEqual(error._tag, "MissingPermissions")
      assert.notInclude(JSON.stringify(error), "SECRET")
      const health = yield* discord.health
      assert.strictEqual(health.outbound.sent, 7)
      assert.deepStrictEqual(health.outbound.failed, { MissingPermissions: 1 })
      assert.strictEqual(health.outbound.rateLimited, 0)
    }),
  )
})

describe("DiscordProvider rest", () => {
  it.live("reply, react and edit over HTTP, on the REST client of the configuration in use", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway({ shards: 1 })
      const { discord } = yield* provider(configFor(gateway))
      const asked = yield* discord.send("123", "status?")
      const reply = yield* discord.rest.reply("123", asked.id, { embeds: [{ title: "all ready" }] })
      yield* discord.rest.react("123", reply.id, "✅")
      const edited = yield* discord.rest.editMessage("123", reply.id, { content: "done" })
      assert.strictEqual(edited.content, "done")
      const requests = (fake: FakeGateway.FakeGatewayService) =>
        Effect.map(fake.restRequests, (records) => records.map((r) => `${r.method} ${r.status} ${r.via}`))
      assert.deepStrictEqual(yield* requests(gateway), [
        "POST 200 http",
        "POST 200 http",
        "PUT 204 http",
        "PATCH 200 http",
      ])
      // A reload to another API address replaces the REST client; `rest` follows it.
      const other = yield* fakeGateway({ shards: 1 })
      yield* discord.reload(configFor(other))
      yield* discord.rest.createMessage("123", { content: "elsewhere" })
      assert.deepStrictEqual(yield* requests(other), ["POST 200 http"])
      assert.strictEqual((yield* gateway.restRequests).length, 4)
    }),
  )
})

describe("DiscordProvider layers", () => {
  const withEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env }))

  /** With the provider some layer gives: start, ready, one socket open. */
  const startsOneShard = (gateway: FakeGateway.FakeGatewayService) =>
    Effect.gen(function* () {
      const discord = yield* DiscordProvider.DiscordProvider
      yield* discord.start
      yield* ready(discord)
      assert.strictEqual(yield* gateway.openSockets, 1)
    })

  it.live("layerConfig reads DISCORD_TOKEN, DISCORD_INTENTS (names or bits) and DISCORD_API_URL", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway({ shards: 1 })
      const env = {
        DISCORD_TOKEN: token,
        DISCORD_INTENTS: "Guilds,GuildMessages",
        DISCORD_API_URL: gateway.httpUrl,
      }
      yield* Effect.scoped(
        startsOneShard(gateway).pipe(
          Effect.provide(
            DiscordProvider.layerConfig().pipe(
              Layer.provide(DiscordProvider.layerNodeRequirements()),
              Layer.provide(withEnv(env)),
            ),
          ),
        ),
      )
      const identified = (yield* gateway.entries).find((e) => e._tag === "Identified")
      assert.strictEqual(identified?._tag === "Identified" ? identified.intents : undefined, 513)
    }),
  )

  it.effect(
    "layerConfig: a missing token or unknown intents fail with ConfigError, the token in neither",
    () =>
      Effect.gen(function* () {
        const build = (env: Record<string, string>) =>
          Effect.flip(
            Layer.build(
              DiscordProvider.layerConfig({ intents: 1 }).pipe(
                Layer.provide(DiscordProvider.layerNodeRequirements()),
                Layer.provide(withEnv(env)),
              ),
            ),
          ).pipe(Effect.scoped)
        const missing = yield* build({})
        assert.strictEqual(missing._tag, "ConfigError")
        assert.include(missing.message, "DISCORD_TOKEN")
        const unknown = yield* build({ DISCORD_TOKEN: "SECRET-token-value", DISCORD_INTENTS: "Guilds,Bogus" })
        assert.strictEqual(unknown._tag, "ConfigError")
        assert.include(unknown.message, "Guilds,Bogus")
        assert.notInclude(unknown.message, "SECRET")
      }),
  )

  it.live(
    "layer on layerNodeRequirements: start, ready, and nothing left when the layer's scope closes",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway({ shards: 1 })
        yield* Effect.scoped(
          startsOneShard(gateway).pipe(
            Effect.provide(
              DiscordProvider.layer(configFor(gateway)).pipe(
                Layer.provide(DiscordProvider.layerNodeRequirements()),
              ),
            ),
          ),
        )
        yield* eventually(
          Effect.map(gateway.openSockets, (n) => n === 0),
          "no socket after the layer closed",
        )
        // App shutdown keeps the session resumable by default (onShutdown: "logout" ends it).
        assert.deepStrictEqual(
          Recording.clientCloses(yield* gateway.entries).map((c) => c.code),
          [4900],
        )
      }),
  )

  it.live(
    "sessionStore: the next process's layer resumes the session the first kept on shutdown, and knows its bot (GET /users/@me): ready, own messages skipped",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway({ shards: 1 })
        // One store both "processes" share, as a session directory on disk would be.
        const sessionStore = Layer.succeed(SessionStore.SessionStore)(SessionStore.makeMemory())
        const run = <A, E>(body: (discord: DiscordProvider.DiscordProviderService) => Effect.Effect<A, E>) =>
          Effect.scoped(
            Effect.gen(function* () {
              const discord = yield* DiscordProvider.DiscordProvider
              return yield* body(discord)
            }).pipe(
              Effect.provide(
                DiscordProvider.layer(configFor(gateway)).pipe(
                  Layer.provide(DiscordProvider.layerNodeRequirements({ sessionStore })),
                ),
              ),
            ),
          )
        yield* run((discord) => Effect.andThen(discord.start, ready(discord)))
        const { health, authors } = yield* run((discord) =>
          Effect.gen(function* () {
            const messages = yield* Effect.forkChild(Stream.runCollect(Stream.take(discord.messages, 1)))
            yield* Effect.sleep(10)
            yield* discord.start
            yield* ready(discord) // a resumed session brings no READY: the bot user came from REST
            const own = {
              ...Traffic.messageCreate(1),
              author: { id: botId, username: "vigil-fake-bot", bot: true },
            }
            yield* gateway.dispatch("all", "MESSAGE_CREATE", own)
            yield* gateway.dispatch("all", "MESSAGE_CREATE", Traffic.messageCreate(2))
            const received = yield* Fiber.join(messages).pipe(Effect.timeout("20 seconds"))
            return {
              health: yield* discord.health,
              authors: received.map((m) => (m._tag === "MessageCreated" ? m.author.id : m._tag)),
            }
          }),
        )
        const entries = yield* gateway.entries
        assert.strictEqual(entries.filter((e) => e._tag === "Identified").length, 1)
        assert.strictEqual(entries.filter((e) => e._tag === "Resumed").length, 1)
        assert.deepStrictEqual(health.botUser, { id: botId, username: "vigil-fake-bot" })
        assert.isTrue(health.ready)
        assert.deepStrictEqual(authors, [Traffic.messageCreate(2).author.id], "the bot's own message skipped")
        assert.strictEqual(health.inbound.ownSkipped, 1)
      }),
  )
})
