/**
 * DiscordProvider over real sockets on 127.0.0.1: FakeGateway (ws, GET /gateway/bot and,
 * through FakeRest's handler, POST /channels/{id}/messages at the same address), Vigil's
 * Node transport wrapped in a socket counter. Real time,
 * short heartbeat intervals.
 */
import { assert, describe, it } from "@effect/vitest"
import { SessionStore } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import { DiscordProvider, Health } from "@vigil/provider"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Invariants from "@vigil/testing/Invariants"
import * as Recording from "@vigil/testing/Recording"
import * as Traffic from "@vigil/testing/Traffic"
import { Cause, Effect, Exit, Fiber, Layer, Redacted, Result, Scope, Stream } from "effect"
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

/** A provider in its own scope (so a test can close it), with a per-test socket counter. */
const provider = (config: DiscordProvider.ProviderConfig) =>
  Effect.gen(function* () {
    const sockets = Invariants.countSockets(NodeTransport.make())
    const scope = yield* Scope.make()
    const env = Layer.mergeAll(sockets.layer, SessionStore.SessionStore.layerMemory, FetchHttpClient.layer)
    const service = yield* DiscordProvider.make(config).pipe(Scope.provide(scope), Effect.provide(env))
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return { discord: service, sockets, scope }
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

const ready = (discord: DiscordProvider.DiscordProviderService) =>
  discord.awaitReady.pipe(Effect.timeout("5 seconds"), Effect.orDie)

const entriesAfter = (entries: ReadonlyArray<Recording.Entry>, index: number) =>
  entries.filter((entry) => entry.index > index)

describe("DiscordProvider lifecycle", () => {
  it.live("start: every shard ready, health says so; stop: sessions ended (1000), no socket left", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const { discord, sockets } = yield* provider(configFor(gateway))
      assert.strictEqual((yield* discord.health).state, "Stopped")
      yield* discord.start
      yield* discord.start // already running: nothing happens
      yield* ready(discord)
      const health = yield* discord.health
      assert.strictEqual(health.state, "Running")
      assert.strictEqual(health.generation, 1)
      assert.strictEqual(Health.verdict(health), "up")
      assert.deepStrictEqual(health.botUser, { id: botId, username: "vigil-fake-bot" })
      assert.deepStrictEqual(
        health.shards.map((s) => [s.shardId, s.shardCount, s.state._tag, s.identifies, s.reconnects]),
        [
          [0, 2, "Ready", 1, 0],
          [1, 2, "Ready", 1, 0],
        ],
      )
      assert.strictEqual(sockets.open(), 2)

      yield* discord.stop()
      assert.strictEqual(sockets.open(), 0, "no client socket after stop")
      yield* eventually(
        Effect.map(gateway.openSockets, (n) => n === 0),
        "the server sees every socket closed",
      )
      const entries = yield* gateway.entries
      assert.deepStrictEqual(
        Recording.clientCloses(entries).map((c) => c.code),
        [1000, 1000],
      )
      assert.isTrue(
        (yield* gateway.sessions).every((s) => !s.resumable),
        "no session left behind",
      )
      const stopped = yield* discord.health
      assert.strictEqual(stopped.state, "Stopped")
      assert.deepStrictEqual(stopped.shards, [])
      assert.strictEqual(Health.verdict(stopped), "down")

      yield* discord.start
      yield* ready(discord)
      assert.strictEqual((yield* discord.health).generation, 2)
      assert.strictEqual(Recording.identifyCount(yield* gateway.entries), 4)
      assert.isAtMost(sockets.max(), 2, "never more sockets than shards")
    }),
  )

  it.live("stop keeping the sessions: closes resumably (4900); the next start resumes, no identify", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const { discord, sockets } = yield* provider(configFor(gateway))
      yield* discord.start
      yield* ready(discord)
      yield* discord.stop({ session: "keep" })
      assert.strictEqual(sockets.open(), 0)
      yield* eventually(
        Effect.map(gateway.openSockets, (n) => n === 0),
        "the server sees every socket closed",
      )
      assert.deepStrictEqual(
        Recording.clientCloses(yield* gateway.entries).map((c) => c.code),
        [4900, 4900],
      )
      yield* discord.start
      yield* ready(discord)
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.identifyCount(entries), 2)
      assert.strictEqual(Recording.resumeCount(entries), 2)
    }),
  )

  it.live(
    "reload with new intents: the old sessions end before a new socket opens; one socket per shard",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway()
        const { discord, sockets } = yield* provider(configFor(gateway))
        yield* discord.start
        yield* ready(discord)
        const before = (yield* gateway.entries).at(-1)!.index
        yield* discord.reload(configFor(gateway, { intents: 513 | (1 << 15) }))
        yield* ready(discord)
        const after = entriesAfter(yield* gateway.entries, before)
        const closes = Recording.only(after, "Closed").filter((e) => e.by === "client")
        assert.deepStrictEqual(
          closes.map((c) => c.code),
          [1000, 1000],
        )
        const identified = Recording.only(after, "Identified")
        assert.deepStrictEqual(
          identified.map((i) => i.intents),
          [513 | (1 << 15), 513 | (1 << 15)],
        )
        // The client tore its old sockets down before opening new ones.
        assert.isAtMost(sockets.max(), 2)
        assert.strictEqual(sockets.open(), 2)
        assert.strictEqual((yield* discord.health).generation, 2)
        assert.strictEqual((yield* discord.config).intents, 513 | (1 << 15))
      }),
  )

  it.live("reload that keeps token, intents and shards resumes the sessions (no identify spent)", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const { discord, sockets } = yield* provider(configFor(gateway, { shardCount: 2 }))
      yield* discord.start
      yield* ready(discord)
      yield* discord.reload(configFor(gateway, { shardCount: 2, largeThreshold: 100 }))
      yield* ready(discord)
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.identifyCount(entries), 2)
      assert.strictEqual(Recording.resumeCount(entries), 2)
      assert.deepStrictEqual(
        Recording.clientCloses(entries).map((c) => c.code),
        [4900, 4900],
      )
      assert.isAtMost(sockets.max(), 2)
    }),
  )

  it.live(
    "reload while the shards reconnect (server down, then links dropped): no stale socket, all ready",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway()
        const { discord, sockets } = yield* provider(configFor(gateway))
        yield* discord.start
        yield* ready(discord)
        yield* gateway.stop()
        yield* eventually(
          Effect.map(discord.health, (h) => h.shards.every((s) => s.state._tag !== "Ready")),
          "shards reconnecting",
        )
        const reloading = yield* Effect.forkChild(discord.reload(configFor(gateway, { intents: 1 })))
        yield* Effect.sleep(100)
        yield* gateway.start
        yield* Fiber.join(reloading)
        yield* ready(discord)
        assert.isAtMost(sockets.max(), 2)

        // Again, with the links cut mid-session and the reload right behind it.
        yield* gateway.drop("all")
        yield* discord.reload(configFor(gateway, { intents: 3 }))
        yield* ready(discord)
        assert.isAtMost(sockets.max(), 2)
        assert.strictEqual(sockets.open(), 2)
        yield* eventually(
          Effect.map(gateway.openSockets, (n) => n === 2),
          "two sockets on the server",
        )
        const live = (yield* gateway.connections).filter((c) => c.state === "open")
        assert.sameMembers(
          live.map((c) => c.shard?.[0]),
          [0, 1],
        )
        assert.strictEqual(Recording.maxOpenPerShard(yield* gateway.entries).get(0)! <= 2, true)
      }),
  )

  it.live("many concurrent reloads are serialized: one generation at a time, the last config wins", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const { discord, sockets } = yield* provider(configFor(gateway))
      yield* discord.start
      yield* ready(discord)
      const intents = [1, 2, 3, 4, 5]
      yield* Effect.forEach(intents, (i) => discord.reload(configFor(gateway, { intents: i })), {
        concurrency: "unbounded",
        discard: true,
      })
      yield* ready(discord)
      const health = yield* discord.health
      assert.strictEqual(health.generation, 6)
      assert.strictEqual((yield* discord.config).intents, 5)
      assert.isAtMost(sockets.max(), 2, "never two sockets for one shard")
      assert.strictEqual(sockets.open(), 2)
      const last = Recording.only(yield* gateway.entries, "Identified").slice(-2)
      assert.deepStrictEqual(
        last.map((i) => i.intents),
        [5, 5],
      )
    }),
  )

  it.live(
    "reload during shutdown: the provider's scope closes, nothing is left running or reconnecting",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway()
        const { discord, sockets, scope } = yield* provider(configFor(gateway))
        yield* discord.start
        yield* ready(discord)
        const reloading = yield* Effect.forkChild(
          Effect.exit(discord.reload(configFor(gateway, { intents: 7 }))),
        )
        const stopping = yield* Effect.forkChild(Effect.exit(discord.stop()))
        yield* Scope.close(scope, Exit.void)
        const reloaded = yield* Fiber.join(reloading)
        yield* Fiber.join(stopping)
        assert.strictEqual(sockets.open(), 0, "no client socket after shutdown")
        const closedAt = (yield* gateway.entries).at(-1)!.index
        // A reload queued behind the shutdown is refused, typed; one that ran before it was undone by it.
        if (Exit.isFailure(reloaded)) {
          assert.strictEqual(Cause.squash(reloaded.cause) instanceof Error, true)
        }
        const late = yield* Effect.exit(discord.reload(configFor(gateway, { intents: 9 })))
        assert.isTrue(Exit.isFailure(late))
        if (Exit.isFailure(late)) assert.include(String(Cause.squash(late.cause)), "ProviderClosed")
        assert.strictEqual((yield* discord.health).state, "Closed")
        yield* Effect.sleep(500)
        assert.deepStrictEqual(
          Recording.only(entriesAfter(yield* gateway.entries, closedAt), "Opened"),
          [],
          "no connection after shutdown",
        )
        yield* eventually(
          Effect.map(gateway.openSockets, (n) => n === 0),
          "server sees no socket",
        )
        yield* discord.stop() // a no-op after shutdown
      }),
  )

  it.live("a shutdown during a reconnect: nothing is left", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const { discord, sockets, scope } = yield* provider(configFor(gateway))
      yield* discord.start
      yield* ready(discord)
      yield* gateway.stop()
      yield* eventually(
        Effect.map(discord.health, (h) => h.shards.some((s) => s.state._tag === "BackingOff")),
        "backing off",
      )
      yield* Scope.close(scope, Exit.void)
      yield* gateway.start
      yield* Effect.sleep(500)
      assert.strictEqual(sockets.open(), 0)
      assert.strictEqual(yield* gateway.openSockets, 0)
    }),
  )
})

describe("DiscordProvider errors and health", () => {
  it.live("a bad token: await fails with AuthenticationFailed (no token in it); a reload fixes it", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway()
      const gatewayBot = {
        url: gateway.url,
        shards: 1,
        session_start_limit: { total: 1000, remaining: 1000, reset_after: 1000, max_concurrency: 1 },
      }
      const wrong = configFor(gateway, { token: Redacted.make("WRONG-SECRET-token"), gatewayBot })
      const { discord } = yield* provider(wrong)
      yield* discord.start
      const error = yield* Effect.flip(discord.await.pipe(Effect.timeout("5 seconds")))
      assert.strictEqual(error._tag, "AuthenticationFailed")
      assert.notInclude(error.message, "SECRET")
      const health = yield* discord.health
      assert.strictEqual(health.fatal?.tag, "AuthenticationFailed")
      assert.strictEqual(Health.verdict(health), "down")
      yield* discord.reload(configFor(gateway, { gatewayBot }))
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
        const health = yield* discord.health
        assert.strictEqual(health.state, "Stopped")
        assert.strictEqual(health.startError?.tag, "AuthenticationFailed")
        assert.strictEqual(sockets.max(), 0)
      }),
  )

  it.live(
    "health stream: a dropped link shows as a reconnect, then a resume, with the error counted by tag",
    () =>
      Effect.gen(function* () {
        const gateway = yield* fakeGateway({ shards: 1 })
        const { discord } = yield* provider(configFor(gateway))
        const seen: Array<Health.ProviderHealth> = []
        yield* Effect.forkChild(
          Stream.runForEach(discord.healthChanges(), (h) => Effect.sync(() => void seen.push(h))),
        )
        yield* Effect.sleep(10)
        yield* discord.start
        yield* ready(discord)
        yield* gateway.drop("all")
        yield* eventually(
          Effect.map(discord.health, (h) => h.shards[0]?.resumes === 1 && h.shards[0].state._tag === "Ready"),
          "resumed",
        )
        const shard = (yield* discord.health).shards[0]!
        assert.strictEqual(shard.reconnects, 1)
        assert.isDefined(shard.lastError)
        assert.strictEqual(shard.errors[shard.lastError!.tag], 1)
        assert.isNumber(shard.latencyMillis ?? 0)
        const states = seen.map((h) => `${h.state}:${h.shards.map((s) => s.state._tag).join(",")}`)
        assert.strictEqual(states[0], "Stopped:")
        assert.include(states, "Running:Ready")
        const readyAt = states.indexOf("Running:Ready")
        assert.isTrue(
          states.slice(readyAt).some((s) => s === "Running:Resuming" || s === "Running:BackingOff"),
          `the reconnect is visible: ${states.join(" ")}`,
        )
        assert.strictEqual(states.at(-1), "Running:Ready")
        // periodic snapshots for the counters
        const ticks = yield* Stream.runCollect(Stream.take(discord.healthChanges({ every: "20 millis" }), 3))
        assert.strictEqual(ticks.length, 3)
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

describe("DiscordProvider.layer", () => {
  it.live("the batteries-included layer: start, ready, and nothing left when the layer's scope closes", () =>
    Effect.gen(function* () {
      const gateway = yield* fakeGateway({ shards: 1 })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const discord = yield* DiscordProvider.DiscordProvider
          yield* discord.start
          yield* ready(discord)
          assert.strictEqual(yield* gateway.openSockets, 1)
        }).pipe(Effect.provide(DiscordProvider.DiscordProvider.layer(configFor(gateway)))),
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
})
