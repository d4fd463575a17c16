/**
 * Resharding under traffic, over real sockets against the fake gateway on 127.0.0.1: many
 * guilds, each with its own numbered stream sent to every session holding it; every event of
 * every guild must reach the consumer exactly once and in the guild's order, identifies keep
 * their pacing, and no more connections open than the plan allows.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, type Protocol, SessionStore, ShardManager, type Transport } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as GuildTraffic from "@vigil/testing/GuildTraffic"
import * as Invariants from "@vigil/testing/Invariants"
import * as Recording from "@vigil/testing/Recording"
import * as Traffic from "@vigil/testing/Traffic"
import { Cause, type Duration, Effect, Exit, Fiber, Layer, Redacted, Scope, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

const token = "reshard-test-token"
const identifyWindow = 150
const guilds = Traffic.guildIds(60, 60)

interface Setup {
  readonly shards: number
  readonly maxConcurrency?: number
  readonly remaining?: number
  readonly maxGuildsPerShard?: number
  readonly autoReshard?: boolean
  readonly checkEvery?: Duration.Input
  readonly fakeRemaining?: number
  readonly waveTimeout?: Duration.Input
  readonly quietMillis?: number
  /** Where the manager lives (default: the test's scope). */
  readonly scope?: Scope.Scope
  /** Sockets opened once `lag` is switched on read this much later than their frames came. */
  readonly lagMillis?: number
}

/**
 * A transport whose sockets opened after `on()` hand each read over `lagMillis` late: the new
 * shards of a reshard stream behind the old ones, as a loaded scheduler may make them.
 */
const lagging = (inner: Transport.GatewayTransport["Service"], lagMillis: number) => {
  let lag = false
  return {
    on: () => {
      lag = true
    },
    transport: {
      connect: (url: string) =>
        Effect.map(inner.connect(url), (socket) =>
          lag ? { ...socket, receive: Effect.tap(socket.receive, () => Effect.sleep(lagMillis)) } : socket,
        ),
    } satisfies Transport.GatewayTransport["Service"],
  }
}

const setup = (options: Setup) =>
  Effect.gen(function* () {
    const maxConcurrency = options.maxConcurrency ?? 2
    const gateway = yield* FakeGateway.make({
      token,
      heartbeatInterval: 1000,
      guilds,
      shards: options.shards,
      maxConcurrency,
      identifyWindow,
      maxGuildsPerShard: options.maxGuildsPerShard,
      sessionStartLimit: { total: 1000, remaining: options.fakeRemaining ?? options.remaining ?? 1000 },
    })
    const lag = lagging(NodeTransport.make(), options.lagMillis ?? 0)
    const sockets = Invariants.countSockets(lag.transport)
    const limit = { ...(yield* gateway.sessionStartLimit), remaining: options.remaining ?? 1000 }
    const manager = yield* ShardManager.make({
      token: Redacted.make(token),
      intents: 513,
      apiBaseUrl: gateway.httpUrl,
      autoReshard: options.autoReshard,
      reshardCheckInterval: options.checkEvery,
      // A little slower than the fake's window: pacing is the client's to keep.
      identifyThrottle: yield* IdentifyThrottle.make({
        maxConcurrency,
        windowMillis: identifyWindow + 50,
        sessionStartLimit: {
          total: limit.total,
          remaining: limit.remaining,
          resetAfterMillis: limit.reset_after,
        },
      }),
      reshardOptions: {
        quietMillis: options.quietMillis ?? 300,
        waveTimeout: options.waveTimeout ?? "20 seconds",
      },
    }).pipe(
      options.scope ? Scope.provide(options.scope) : (effect) => effect,
      Effect.provide(
        Layer.mergeAll(sockets.layer, SessionStore.SessionStore.layerMemory, FetchHttpClient.layer),
      ),
    )
    const consumed: Array<Protocol.Dispatch> = []
    const counts: Array<number> = []
    yield* Effect.forkIn(
      Stream.runForEach(manager.events, (e) =>
        Effect.sync(() => {
          consumed.push(e.dispatch)
          counts.push(e.shardCount)
        }),
      ),
      options.scope ?? (yield* Effect.scope),
    )
    yield* eventually(
      Effect.map(
        manager.statuses,
        (s) => s.length === options.shards && s.every((x) => x.state._tag === "Ready"),
      ),
      "the first shards READY",
      "10 seconds",
    )
    return { gateway, manager, sockets, consumed, counts, throttle: manager.identifyThrottle, lag }
  })

/** Waits until every produced guild event was consumed (or the report stops changing), then reports. */
const settle = (log: GuildTraffic.Log, consumed: ReadonlyArray<Protocol.Dispatch>) =>
  Effect.gen(function* () {
    let report = Invariants.perGuild(log.produced, consumed)
    for (let i = 0; i < 300 && report.lost > 0; i++) {
      yield* Effect.sleep(20)
      report = Invariants.perGuild(log.produced, consumed)
    }
    return report
  })

/** Every pair of identifies in one bucket at least the fake's window apart. */
const pacingViolations = (entries: ReadonlyArray<Recording.Entry>, maxConcurrency: number) => {
  const byBucket = new Map<number, Array<number>>()
  for (const e of Recording.only(entries, "Identified")) {
    const list = byBucket.get(e.shard[0] % maxConcurrency) ?? []
    list.push(e.at)
    byBucket.set(e.shard[0] % maxConcurrency, list)
  }
  const refused = Recording.only(entries, "Rejected").filter((r) => r.reason.includes("rate limited")).length
  let tooClose = 0
  for (const times of byBucket.values()) {
    for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! < identifyWindow) tooClose++
  }
  return tooClose + refused
}

const sessionsOf = (gateway: FakeGateway.FakeGatewayService, count: number) =>
  Effect.map(gateway.sessions, (all) => all.filter((s) => s.shard[1] === count))

describe("ShardManager.reshard under traffic", () => {
  it.live(
    "2 → 4 in waves: each guild's events exactly once and in order, 2 connections beside the serving ones",
    () =>
      Effect.gen(function* () {
        const { gateway, manager, sockets, consumed } = yield* setup({ shards: 2 })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(200)
        const before = consumed.length
        yield* manager.reshard(4)
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        assert.deepStrictEqual(report.violations, [])
        assert.strictEqual(report.lost + report.duplicated + report.outOfOrder, 0)
        assert.isAbove(log.copies, log.sent, "some events went to both sessions")
        assert.isAbove(consumed.length, before)
        assert.strictEqual(manager.shardCount, 4)
        assert.deepStrictEqual(manager.shardIds, [0, 1, 2, 3])
        const status = yield* manager.reshardStatus
        assert.strictEqual(status.state._tag, "Idle")
        assert.strictEqual(status.last?.outcome, "completed")
        // waves: 2 joining beside the serving shards; the last wave has old 1 + 4 new (the
        // whole set at once would have been 2 + 4)
        assert.isAtMost(sockets.max(), 5)
        const entries = yield* gateway.entries
        assert.strictEqual(pacingViolations(entries, 2), 0)
        // the old sessions logged out (1000, ended); the new ones serve
        assert.deepStrictEqual(
          (yield* sessionsOf(gateway, 2)).map((s) => s.resumable),
          [false, false],
        )
        assert.deepStrictEqual(
          (yield* sessionsOf(gateway, 4)).map((s) => s.resumable),
          [true, true, true, true],
        )
        const closes = Recording.clientCloses(entries)
        assert.deepStrictEqual(
          closes.map((c) => c.code),
          [1000, 1000],
        )
        // no READY or GUILD_CREATE of the new shards reached the consumer twice for a guild
        const creates = consumed.filter((d) => d.type === "GUILD_CREATE").length
        assert.strictEqual(creates, guilds.length)
        yield* Effect.logInfo(
          `2→4: ${report.consumed} guild events, ${log.copies - log.sent} sent twice, took ${status.last?.tookMillis} ms`,
        )
      }),
    60_000,
  )

  it.live(
    "2 → 4 with the new shards streaming 250 ms behind the old ones: their late copies are not delivered again",
    () =>
      Effect.gen(function* () {
        // Issue 13: a guild counted as handed over once its streams overlapped (or after the
        // quiet time), its old shard closed, and the new shard's copies of the old one's last
        // events, still on their way, passed straight through. With the lag, every run has them.
        const { gateway, manager, consumed, lag } = yield* setup({ shards: 2, lagMillis: 250 })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(200)
        lag.on()
        yield* manager.reshard(4)
        yield* Effect.sleep(800)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        yield* Effect.logInfo(
          `lagging 2→4: ${log.copies - log.sent} sent twice; lost ${report.lost}, duplicated ${report.duplicated}, out of order ${report.outOfOrder}`,
        )
        assert.deepStrictEqual(report.violations, [])
        assert.strictEqual(report.lost + report.duplicated + report.outOfOrder, 0)
        assert.strictEqual(manager.shardCount, 4)
        assert.isAbove(log.copies, log.sent, "some events went to both sessions")
      }),
    60_000,
  )

  it.live(
    "3 → 5 as a whole set: exactly once and in order; at most 5 extra connections",
    () =>
      Effect.gen(function* () {
        const { gateway, manager, sockets, consumed } = yield* setup({ shards: 3, maxConcurrency: 4 })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(200)
        yield* manager.reshard(5)
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        assert.deepStrictEqual(report.violations, [])
        assert.strictEqual(report.lost + report.duplicated + report.outOfOrder, 0)
        assert.strictEqual(manager.shardCount, 5)
        assert.isAtMost(sockets.max(), 8)
        assert.isAbove(sockets.max(), 5, "the whole new set ran beside the old one")
        const entries = yield* gateway.entries
        assert.strictEqual(pacingViolations(entries, 4), 0)
        assert.deepStrictEqual(
          (yield* sessionsOf(gateway, 3)).map((s) => s.resumable),
          [false, false, false],
        )
      }),
    60_000,
  )

  it.live(
    "a 4011 with autoReshard: reshards to the recommended count; every event produced after is delivered once, in order",
    () =>
      Effect.gen(function* () {
        const { gateway, manager, consumed } = yield* setup({ shards: 2, autoReshard: true })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(200)
        // the bot grew: at most 20 guilds a shard now, 4 recommended; shards over it are closed with 4011
        yield* gateway.setRecommendedShards(4)
        const closed = yield* gateway.setMaxGuildsPerShard(20, { enforce: true })
        assert.strictEqual(closed.length, 2)
        yield* eventually(
          Effect.map(manager.reshardStatus, (s) => s.last?.outcome === "completed"),
          "the 4011-triggered reshard",
          "20 seconds",
        )
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        // what the gateway produced reached the consumer once, in order (while no session held
        // a guild, Discord sent nothing: `unrouted`)
        assert.deepStrictEqual(report.violations, [])
        assert.isAbove(log.unrouted, 0)
        assert.strictEqual(manager.shardCount, 4)
        const status = yield* manager.reshardStatus
        assert.strictEqual(status.last?.trigger, "4011")
        const awaited = yield* Effect.exit(Effect.timeout(manager.await, 10))
        assert.isTrue(
          Exit.isFailure(awaited) && String(awaited.cause).includes("TimeoutError"),
          "the manager did not stop",
        )
      }),
    60_000,
  )

  it.live(
    "a 4011 whose reshard is refused (budget) stops the manager with ShardingRequired, as without autoReshard",
    () =>
      Effect.gen(function* () {
        const { gateway, manager } = yield* setup({ shards: 2, autoReshard: true, remaining: 5 })
        yield* gateway.setRecommendedShards(4)
        yield* gateway.setMaxGuildsPerShard(20, { enforce: true })
        const error = yield* Effect.flip(manager.await)
        assert.strictEqual(error._tag, "ShardingRequired")
        const status = yield* manager.reshardStatus
        assert.strictEqual(status.last?.outcome, "refused")
        assert.strictEqual(status.last?.trigger, "4011")
      }),
    30_000,
  )

  it.live(
    "refused, typed, when the daily budget lacks the new shards plus the margin; nothing started",
    () =>
      Effect.gen(function* () {
        const { gateway, manager, sockets } = yield* setup({ shards: 2, remaining: 7 })
        // 5 left after the 2 first identifies: 4 new + a margin of 2 needs 6
        const error = yield* Effect.flip(manager.reshard(4))
        assert.strictEqual(error._tag, "ReshardRefused")
        assert.strictEqual(error._tag === "ReshardRefused" && error.reason, "budget")
        assert.strictEqual(sockets.max(), 2)
        assert.strictEqual((yield* gateway.sessions).length, 2)
        assert.strictEqual((yield* manager.reshardStatus).last?.outcome, "refused")
      }),
    30_000,
  )

  it.live(
    "a new shard failing mid-reshard rolls back: the old count serves, no new session left, nothing lost",
    () =>
      Effect.gen(function* () {
        const { gateway, manager, consumed, sockets } = yield* setup({ shards: 2 })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(200)
        const reshard = yield* Effect.forkChild(manager.reshard(4))
        // the first wave completes (old shard 0 replaced by 0/4 and 2/4), then a shard of the second dies
        yield* eventually(
          Effect.map(gateway.sessions, (all) => all.some((s) => s.shard[0] === 1 && s.shard[1] === 4)),
          "the second wave identifying",
          "20 seconds",
        )
        yield* gateway.close(
          { session: (yield* sessionsOf(gateway, 4)).find((s) => s.shard[0] === 1)!.id },
          4013,
        )
        const exit = yield* Fiber.await(reshard)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? String(exit.cause) : ""
        assert.include(error, "ReshardFailed")
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        assert.deepStrictEqual(report.violations, [])
        assert.strictEqual(report.lost + report.duplicated + report.outOfOrder, 0)
        assert.strictEqual(manager.shardCount, 2)
        const live = (yield* gateway.sessions).filter((s) => s.resumable)
        assert.sameMembers(
          live.map((s) => `${s.shard[0]}/${s.shard[1]}`),
          ["0/2", "1/2"],
        )
        assert.strictEqual(sockets.open(), 2)
        const status = yield* manager.reshardStatus
        assert.strictEqual(status.last?.outcome, "rolled-back")
        assert.strictEqual(status.state._tag, "Idle")
      }),
    60_000,
  )

  it.live(
    "the periodic check reshards when /gateway/bot's recommendation rises",
    () =>
      Effect.gen(function* () {
        const { gateway, manager, consumed } = yield* setup({ shards: 2, checkEvery: "300 millis" })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(700)
        assert.isUndefined((yield* manager.reshardStatus).last, "no reshard while the recommendation stays")
        yield* gateway.setRecommendedShards(4)
        yield* eventually(() => manager.shardCount === 4, "the periodic reshard", "20 seconds")
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        assert.deepStrictEqual(report.violations, [])
        const status = yield* manager.reshardStatus
        assert.strictEqual(status.last?.trigger, "periodic")
        assert.strictEqual(status.last?.outcome, "completed")
      }),
    60_000,
  )

  it.live(
    "identifies refused by the server mid-reshard: the wave times out and rolls back; nothing lost",
    () =>
      Effect.gen(function* () {
        // the server has 3 identifies left (the client believes 1000): 2 for the first shards, 1 new
        const { gateway, manager, consumed, sockets } = yield* setup({
          shards: 2,
          fakeRemaining: 3,
          waveTimeout: "3 seconds",
        })
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        yield* Effect.sleep(200)
        const error = yield* Effect.flip(manager.reshard(4))
        assert.strictEqual(error._tag, "ReshardFailed")
        assert.include(error.message, "wave timed out")
        assert.isTrue(error._tag === "ReshardFailed" && error.rolledBack)
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        assert.deepStrictEqual(report.violations, [])
        assert.strictEqual(report.lost + report.duplicated + report.outOfOrder, 0)
        assert.strictEqual(manager.shardCount, 2)
        const entries = yield* gateway.entries
        assert.isAbove(
          Recording.only(entries, "Rejected").filter((r) => r.reason.includes("session start limit")).length,
          0,
        )
        assert.deepStrictEqual(
          (yield* sessionsOf(gateway, 4)).filter((s) => s.resumable),
          [],
        )
        yield* eventually(() => sockets.open() === 2, "only the old shards' sockets open")
      }),
    60_000,
  )

  it.live(
    "the manager's scope closed mid-reshard: the new shards log out, nothing stays open",
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const { gateway, manager, sockets } = yield* setup({ shards: 2, scope })
        yield* Effect.forkIn(Effect.ignore(manager.reshard(4)), scope)
        yield* eventually(
          Effect.map(sessionsOf(gateway, 4), (s) => s.length > 0),
          "a new shard identified",
          "20 seconds",
        )
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(sockets.open(), 0)
        // the server sees the close frames a moment later
        yield* eventually(
          Effect.map(sessionsOf(gateway, 4), (s) => s.every((x) => !x.resumable)),
          "no session of the new count left resumable",
        )
        assert.deepStrictEqual(
          (yield* sessionsOf(gateway, 2)).map((s) => s.resumable),
          [true, true],
          "the old ones closed as on any shutdown: resumable",
        )
        const closes = Recording.clientCloses(yield* gateway.entries)
        assert.isTrue(closes.some((c) => c.code === 1000))
      }),
    60_000,
  )

  it.live(
    "the budget spent by someone else mid-reshard: the rollback cannot identify either; both counts serve, each guild once",
    () =>
      Effect.gen(function* () {
        // 6 left after the first shards: enough for 4 new + a margin of 2 at the check
        const { gateway, manager, consumed, sockets, throttle } = yield* setup({
          shards: 2,
          remaining: 8,
          quietMillis: 1500,
        })
        // no traffic yet: quiet guilds are handed over after quietMillis, which leaves time
        const reshard = yield* Effect.forkChild(manager.reshard(4))
        yield* eventually(
          Effect.map(sessionsOf(gateway, 4), (all) => all.length === 2),
          "the first wave identified",
          "20 seconds",
        )
        // another manager of the same bot takes all but one of what is left
        const left = yield* throttle.remaining
        for (let i = 0; i < left - 1; i++) yield* throttle.wait(1)
        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 25 })
        const exit = yield* Fiber.await(reshard)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
        const failed = error?._tag === "Some" ? error.value : undefined
        assert.strictEqual(failed?._tag, "ReshardFailed")
        assert.isFalse(failed?._tag === "ReshardFailed" && failed.rolledBack, "rollback incomplete")
        assert.include(failed?.message ?? "", "no identifies left today")
        yield* Effect.sleep(200)
        const log = yield* traffic.stop
        const report = yield* settle(log, consumed)
        assert.deepStrictEqual(report.violations, [])
        assert.strictEqual(report.lost + report.duplicated + report.outOfOrder, 0)
        // old shard 0 was replaced by 0/4 and 2/4; old 1 serves on: each guild by one shard
        yield* eventually(
          Effect.map(gateway.sessions, (all) => {
            const live = all.filter((x) => x.resumable).map((x) => `${x.shard[0]}/${x.shard[1]}`)
            return live.sort().join() === "0/4,1/2,2/4"
          }),
          "the sessions serving: 0/4, 2/4 and 1/2",
        )
        yield* eventually(() => sockets.open() === 3, "three sockets open")
        const again = yield* Effect.flip(manager.reshard(8))
        assert.strictEqual(again._tag === "ReshardRefused" && again.reason, "in-progress")
        const awaited = yield* Effect.exit(Effect.timeout(manager.await, 10))
        assert.isTrue(
          Exit.isFailure(awaited) && String(awaited.cause).includes("TimeoutError"),
          "the manager did not stop",
        )
      }),
    60_000,
  )
})
