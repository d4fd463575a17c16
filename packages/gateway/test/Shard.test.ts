/**
 * The shard supervisor against the scripted in-memory gateway, every timing decided by
 * TestClock: resume and re-identify paths, backoff, fatal stops, exactly-once delivery,
 * the send limiter, the outbox, and the session store.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, Protocol, ReconnectPolicy, SessionStore, Shard } from "@vigil/gateway"
import { MemoryTransport, ScriptedGateway, Settle } from "@vigil/gateway/testing"
import {
  Clock,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Random,
  Redacted,
  Scope,
  Stream,
  SubscriptionRef,
} from "effect"

const interval = 41_250
const jitter = 0.5
const token = Redacted.make("shard-test-token")

const fixedRandom = Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => jitter, nextIntUnsafe: () => 0 })

const env = (options: ScriptedGateway.ScriptedGatewayOptions = {}, maxConcurrency = 1) =>
  Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval, ...options }),
    SessionStore.SessionStore.layerMemory,
    IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency }),
    fixedRandom,
  )

const config = (overrides: Partial<Shard.ShardConfig> = {}): Shard.ShardConfig => ({
  token,
  intents: 1,
  shard: [0, 1],
  gatewayUrl: "memory://gateway",
  ...overrides,
})

const settle = Settle.settle
const advance = Settle.advance
/** Long enough up for a connection to prove healthy, so that its end is met at once. */
const healthy = advance(ReconnectPolicy.defaultConfig.healthyAfterMillis)

/** Starts a shard and a consumer collecting its events. */
const started = (overrides: Partial<Shard.ShardConfig> = {}) =>
  Effect.gen(function* () {
    const server = yield* ScriptedGateway.ScriptedGateway
    const memory = yield* MemoryTransport.MemoryTransport
    const shard = yield* Shard.make(config(overrides))
    const seen: Array<Protocol.Dispatch> = []
    yield* Effect.forkChild(Stream.runForEach(shard.events, (e) => Effect.sync(() => void seen.push(e))))
    yield* settle
    return { server, memory, shard, seen }
  })

/** Everything the server produced reached the consumer exactly once, in order. */
const assertExactlyOnce = (
  seen: ReadonlyArray<Protocol.Dispatch>,
  produced: ReadonlyArray<{ s: number; t: string }>,
) => {
  // Each session restarts at 1: compare (type, seq) pairs in order.
  assert.deepStrictEqual(
    seen.map((e) => `${e.type}#${e.seq}`),
    produced.map((e) => `${e.t}#${e.s}`),
  )
}

describe("Shard", () => {
  it.effect("onStatus is told of every status change, in order, each from the one before", () =>
    Effect.gen(function* () {
      const seen: Array<[Shard.ShardStatus, Shard.ShardStatus]> = []
      const { server, shard } = yield* started({ onStatus: (next, previous) => seen.push([next, previous]) })
      yield* server.close(4000) // resumable: back off, then resume
      yield* advance(10_000)
      const states = seen.map(([next]) => next.state._tag)
      assert.includeMembers(states, ["Identifying", "Ready", "BackingOff", "Resuming"])
      for (let i = 1; i < seen.length; i++) assert.strictEqual(seen[i]![1], seen[i - 1]![0], `change ${i}`)
      assert.strictEqual(seen.at(-1)![0], yield* SubscriptionRef.get(shard.status), "the last is the status")
      assert.strictEqual(seen.at(-1)![0].state._tag, "Ready")
      assert.strictEqual(
        seen.find(([next]) => next.lastError !== undefined)?.[0].lastError?.tag,
        "ServerClosed",
      )
    }).pipe(Effect.provide(env())),
  )

  it.effect("identifies, becomes Ready, delivers events in order", () =>
    Effect.gen(function* () {
      const { server, shard, seen } = yield* started()
      yield* server.emitMessages(5)
      yield* settle
      const status = yield* SubscriptionRef.get(shard.status)
      assert.strictEqual(status.state._tag, "Ready")
      assert.strictEqual(status.identifies, 1)
      assertExactlyOnce(seen, server.produced())
      assert.strictEqual(seen.length, 6)
    }).pipe(Effect.provide(env())),
  )

  it.effect("resumes after a zombie; events sent meanwhile are replayed, none lost or repeated", () =>
    Effect.gen(function* () {
      const { server, memory, seen } = yield* started()
      yield* server.emitMessages(3)
      yield* server.stopAcks()
      yield* advance(interval * jitter) // beat, unanswered
      const first = server.peer()!
      yield* server.emitMessages(2, 0, 4) // arrive on the dying connection
      yield* advance(interval) // zombie
      assert.isFalse(first.isOpen())
      assert.strictEqual(first.clientCloseCode(), Protocol.ResumableCloseCode)
      yield* server.resumeAcks()
      yield* settle
      assert.strictEqual(server.resumes(), 1)
      assert.strictEqual(server.identifies().length, 1)
      yield* server.emitMessages(2, 0, 6)
      yield* settle
      assertExactlyOnce(seen, server.produced())
      assert.strictEqual(memory.openCount(), 1)
    }).pipe(Effect.provide(env())),
  )

  it.effect("resumes after op 7 and after a dropped socket, on the resume URL", () =>
    Effect.gen(function* () {
      const { server, memory, seen } = yield* started()
      yield* server.emitMessages(2)
      yield* healthy
      yield* server.reconnect()
      yield* settle
      yield* server.emitMessages(2, 0, 3)
      yield* healthy
      yield* server.drop()
      yield* server.emitMessages(2, 0, 5) // produced while disconnected: replayed
      yield* settle
      assert.strictEqual(server.resumes(), 2)
      assert.strictEqual(server.identifies().length, 1)
      const urls = memory.peers().map((p) => new URL(p.url).protocol + new URL(p.url).host)
      assert.deepStrictEqual(urls, ["memory:gateway", "memory:resume", "memory:resume"])
      assertExactlyOnce(seen, server.produced())
    }).pipe(Effect.provide(env())),
  )

  it.effect("identifies afresh after 4007 and 4009; the new session's events start again at 1", () =>
    Effect.gen(function* () {
      const { server, seen } = yield* started()
      yield* server.emitMessages(2)
      yield* server.close(4007)
      yield* advance(5_250) // the next identify waits for the 5 s identify window (and its 250 ms margin)
      assert.strictEqual(server.identifies().length, 2)
      yield* server.emitMessages(1)
      yield* server.close(4009)
      yield* advance(5_250)
      assert.strictEqual(server.identifies().length, 3)
      assert.strictEqual(server.resumes(), 0)
      assertExactlyOnce(seen, server.produced())
    }).pipe(Effect.provide(env())),
  )

  it.effect("Invalid Session (false) waits the random 1–5 s, then identifies", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      const before = server.identifies()[0]!
      yield* advance(10_000) // past the identify window
      yield* server.invalidSession(false)
      yield* settle
      const status = yield* SubscriptionRef.get(shard.status)
      assert.strictEqual(status.state._tag, "BackingOff")
      assert.isUndefined(status.sessionId, "the refused session is forgotten")
      yield* advance(2_999) // jitter 0.5 → 3000 ms
      assert.strictEqual(server.identifies().length, 1)
      yield* advance(1)
      assert.strictEqual(server.identifies().length, 2)
      assert.strictEqual(server.identifies()[1]! - before, 13_000)
      yield* settle
      const ready = yield* SubscriptionRef.get(shard.status)
      assert.strictEqual(ready.sessionId, "session-0-2", "the new session's id")
    }).pipe(Effect.provide(env())),
  )

  it.effect("Invalid Session (true) resumes", () =>
    Effect.gen(function* () {
      const { server } = yield* started()
      yield* healthy
      yield* server.invalidSession(true)
      yield* settle
      assert.strictEqual(server.resumes(), 1)
      assert.strictEqual(server.identifies().length, 1)
    }).pipe(Effect.provide(env())),
  )

  it.effect("resume-loop breaker: after 3 failed resumes in a row it identifies", () =>
    Effect.gen(function* () {
      const { server, memory } = yield* started()
      yield* server.rejectResumes(4000)
      yield* server.drop()
      // three rejected resumes, with growing backoff between them
      yield* advance(120_000)
      assert.strictEqual(server.identifies().length, 2)
      const urls = memory.peers().map((p) => new URL(p.url).host)
      assert.deepStrictEqual(urls, ["gateway", "resume", "resume", "resume", "gateway"])
    }).pipe(Effect.provide(env())),
  )

  it.effect(
    "backoff grows while connections keep failing, is capped, and resets only once a connection proved healthy",
    () =>
      Effect.gen(function* () {
        const { server, memory } = yield* started({
          policy: { backoffBaseMillis: 1_000, backoffMaxMillis: 8_000 },
        })
        for (let i = 0; i < 7; i++) yield* memory.failNextConnect("network down")
        yield* healthy
        yield* server.drop()
        yield* advance(29_500) // to the attempt that works (the gaps below, after the first)
        const attempts = memory.connectAttempts()
        const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
        // The drop ends a healthy connection 5 s up: reconnect at once. Each failed connect
        // then backs off: 750 (raised to the 1 s floor), 1500, 3000, 6000 (8000 capped, equal
        // jitter 0.5), … until one works.
        assert.deepStrictEqual(gaps, [5_000, 1_000, 1_500, 3_000, 6_000, 6_000, 6_000, 6_000])
        assert.strictEqual(server.resumes(), 1)
        // RESUMED alone does not reset it: a connection that ends right after RESUMED backs off
        // as the next failure in the row.
        let count = memory.connectAttempts().length
        yield* server.drop()
        yield* advance(5_999)
        assert.strictEqual(memory.connectAttempts().length, count, "still backing off")
        yield* advance(1)
        assert.strictEqual(memory.connectAttempts().length, count + 1)
        // Once a connection has been up 5 s it proved healthy: its end is met at once.
        yield* healthy
        count = memory.connectAttempts().length
        const now = yield* Clock.currentTimeMillis
        yield* server.drop()
        yield* settle
        assert.strictEqual(memory.connectAttempts().length, count + 1)
        assert.strictEqual(memory.connectAttempts()[count], now)
      }).pipe(Effect.provide(env())),
  )

  it.effect("a heartbeat ACKed after RESUMED proves the connection healthy before 5 s", () =>
    Effect.gen(function* () {
      const { server, memory } = yield* started()
      yield* memory.failNextConnect("network down")
      yield* healthy
      yield* server.drop()
      yield* advance(1_000) // one failed connect, backoff raised to the floor, then resumed
      assert.strictEqual(server.resumes(), 1)
      yield* server.requestHeartbeat() // ACKed at once: the link works after RESUMED
      yield* advance(1_000) // past the floor
      const count = memory.connectAttempts().length
      const now = yield* Clock.currentTimeMillis
      yield* server.drop()
      yield* settle
      assert.strictEqual(memory.connectAttempts().length, count + 1, "reconnected at once")
      assert.strictEqual(memory.connectAttempts()[count], now)
    }).pipe(Effect.provide(env())),
  )

  it.effect("a socket that opens but never reaches READY does not reset the backoff", () =>
    Effect.gen(function* () {
      const { server, memory } = yield* started({
        policy: { backoffBaseMillis: 1_000, backoffMaxMillis: 60_000 },
      })
      // Every resume is closed right after it opens: the socket opens each time.
      yield* server.rejectResumes(4000)
      yield* healthy
      yield* server.drop()
      yield* advance(2_500)
      // Each resume opens its socket and is closed before RESUMED: that open must not
      // reset the backoff, so the gaps still grow (the first raised to the 1 s floor).
      const attempts = memory.connectAttempts()
      const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
      assert.deepStrictEqual(gaps, [5_000, 1_000, 1_500])
      assert.isTrue(
        memory.peers().every((p) => p.sent.length > 0),
        "every attempt opened and sent Resume",
      )
    }).pipe(Effect.provide(env())),
  )

  const fatal: Array<[number, string]> = [
    [4004, "AuthenticationFailed"],
    [4010, "InvalidShard"],
    [4011, "ShardingRequired"],
    [4012, "InvalidApiVersion"],
    [4013, "InvalidIntents"],
    [4014, "DisallowedIntents"],
  ]
  it.effect.each(fatal)("close %i stops the shard with %s, never retried", ([code, tag]) =>
    Effect.gen(function* () {
      const { server, memory, shard } = yield* started()
      yield* server.close(code)
      const exit = yield* Effect.exit(shard.await)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
      assert.strictEqual(error?._tag === "Some" ? error.value._tag : undefined, tag)
      const attempts = memory.connectAttempts().length
      yield* advance(600_000)
      assert.strictEqual(memory.connectAttempts().length, attempts)
      const status = yield* SubscriptionRef.get(shard.status)
      assert.strictEqual(status.state._tag, "Stopped")
      // and the consumer's stream ends
    }).pipe(Effect.provide(env())),
  )

  it.effect("fatal errors can be handled by tag", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      yield* server.close(4004)
      const handled = yield* shard.await.pipe(
        Effect.as("still running"),
        Effect.catchTag("AuthenticationFailed", (e) => Effect.succeed(`bad token (${e.code})`)),
        Effect.catch(() => Effect.succeed("other")),
      )
      assert.strictEqual(handled, "bad token (4004)")
    }).pipe(Effect.provide(env())),
  )

  it.effect("replayed dispatches already delivered are dropped by sequence", () =>
    Effect.gen(function* () {
      const { server, shard, seen } = yield* started()
      yield* server.emitMessages(10)
      yield* healthy
      yield* server.reconnect()
      yield* settle
      yield* server.emitMessages(3, 0, 11)
      yield* settle
      assertExactlyOnce(seen, server.produced())
      const health = yield* shard.health
      assert.strictEqual(health.duplicates, 4, "the server replayed 4 already-delivered events")
    }).pipe(Effect.provide(env({ replayOverlap: 4 }))),
  )

  it.effect("a resume whose replay includes READY keeps the session and its de-duplication", () =>
    Effect.gen(function* () {
      const { server, shard, seen } = yield* started()
      yield* server.emitMessages(2)
      yield* healthy
      yield* server.reconnect() // the replay starts before READY#1: READY, 2, 3, then RESUMED
      yield* settle
      yield* server.emitMessages(1, 0, 3)
      yield* settle
      assertExactlyOnce(seen, server.produced())
      const health = yield* shard.health
      assert.strictEqual(health.duplicates, 3, "READY#1 and both messages were replayed, and dropped")
      assert.strictEqual(health.identifies, 1)
      assert.strictEqual(health.resumes, 1)
      assert.strictEqual(health.sessionId, "session-0-1")
    }).pipe(Effect.provide(env({ replayOverlap: 5 }))),
  )

  it.effect(
    "status: Connecting, then WaitingForIdentify while the identify slot is taken, then Identifying",
    () =>
      Effect.gen(function* () {
        const memory = yield* MemoryTransport.MemoryTransport
        yield* Shard.make(config({ shard: [0, 2] }))
        const second = yield* Shard.make(config({ shard: [1, 2] }))
        const states: Array<string> = []
        yield* Effect.forkChild(
          Stream.runForEach(SubscriptionRef.changes(second.status), (s) =>
            Effect.sync(() => void states.push(s.state._tag)),
          ),
        )
        yield* settle
        assert.strictEqual(memory.openCount(), 2, "both sockets are open")
        // max_concurrency 1: shard 1 waits for shard 0's 5 s identify window (and its 250 ms margin).
        assert.deepStrictEqual(states, ["Connecting", "WaitingForIdentify"])
        yield* advance(5_250)
        assert.deepStrictEqual(states, ["Connecting", "WaitingForIdentify", "Identifying", "Ready"])
      }).pipe(Effect.provide(env())),
  )

  it.effect("after it stopped for good, pending and later commands fail with ShardStopped", () =>
    Effect.gen(function* () {
      const { server, memory, shard } = yield* started()
      // a member request sent, waiting for chunks that will never come
      const members = yield* Effect.forkChild(
        Effect.flip(shard.requestGuildMembers({ guildId: "42", query: "", limit: 0 })),
      )
      yield* settle
      for (let i = 0; i < 20; i++) yield* memory.failNextConnect("down")
      yield* healthy
      yield* server.drop()
      yield* settle
      const pending = yield* Effect.forkChild(Effect.flip(shard.send(3, { status: "idle" })))
      yield* settle
      assert.strictEqual((yield* shard.health).queuedCommands, 1)
      yield* shard.logout // while backing off
      const error = yield* Fiber.join(pending)
      assert.strictEqual(error._tag, "ShardStopped")
      assert.include(error.message, "logged out")
      assert.strictEqual((yield* Fiber.join(members))._tag, "ShardStopped")
      const later = yield* Effect.flip(shard.send(3, { status: "online" }))
      assert.strictEqual(later._tag, "ShardStopped")
      const laterMembers = yield* Effect.flip(shard.requestGuildMembers({ guildId: "42", userIds: ["1"] }))
      assert.strictEqual(laterMembers._tag, "ShardStopped")
    }).pipe(Effect.provide(env())),
  )

  it.effect("a fatal stop and a closed scope fail commands with ShardStopped too", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      yield* server.close(4004)
      yield* settle
      const error = yield* Effect.flip(shard.send(3, {}))
      assert.strictEqual(error._tag === "ShardStopped" ? error.reason : error._tag, "AuthenticationFailed")
      const scope = yield* Scope.make()
      const other = yield* Shard.make(config({ shard: [0, 1] })).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      const closed = yield* Effect.flip(other.send(3, {}))
      assert.strictEqual(closed._tag === "ShardStopped" ? closed.reason : closed._tag, "shut down")
    }).pipe(Effect.provide(env())),
  )

  it.effect(
    "the send limiter never exceeds 120 per 60 s under a burst, and heartbeats are never starved",
    () =>
      Effect.gen(function* () {
        const { server, shard } = yield* started()
        yield* Effect.forkChild(
          Effect.forEach(
            Array.from({ length: 400 }, (_, i) => i),
            (i) => shard.send(3, { n: i }),
            {
              concurrency: "unbounded",
              discard: true,
            },
          ),
        )
        yield* advance(240_000)
        const peer = server.peer()!
        const times = peer.sent.map((f) => f.at)
        for (let i = 0; i < times.length; i++) {
          const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + 60_000).length
          assert.isAtMost(inWindow, Protocol.sendLimit.commands, `window starting at ${times[i]}`)
        }
        const beats = peer.sent.filter((f) => f.op === 1).map((f) => f.at)
        const gaps = beats.slice(1).map((t, i) => t - beats[i]!)
        assert.isTrue(
          gaps.every((g) => g === interval),
          "a heartbeat every interval despite the burst",
        )
        assert.isTrue(peer.isOpen(), "no zombie, no 4008")
        assert.isAbove(server.commands().length, 300)
      }).pipe(Effect.provide(env())),
  )

  it.effect("a payload over 4096 bytes is refused with a typed error before sending", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      const error = yield* Effect.flip(shard.send(3, { blob: "x".repeat(5_000) }))
      assert.strictEqual(error._tag, "PayloadTooLarge")
      assert.isAbove(error._tag === "PayloadTooLarge" ? error.bytes : 0, 4096)
      yield* settle
      assert.strictEqual(server.commands().length, 0)
    }).pipe(Effect.provide(env())),
  )

  it.effect("commands sent while disconnected wait, then flush once after RESUMED", () =>
    Effect.gen(function* () {
      const { server, memory, shard } = yield* started()
      yield* memory.failNextConnect("down")
      yield* memory.failNextConnect("down")
      yield* server.drop()
      yield* settle
      const sending = yield* Effect.forkChild(shard.send(3, { status: "idle" }))
      yield* settle
      assert.strictEqual(server.commands().length, 0)
      assert.strictEqual((yield* shard.health).queuedCommands, 1)
      yield* advance(10_000)
      yield* Fiber.join(sending)
      assert.deepStrictEqual(
        server.commands().map((c) => c.d),
        [{ status: "idle" }],
      )
      yield* server.drop()
      yield* advance(10_000)
      assert.strictEqual(server.commands().length, 1, "flushed once, not again on the next connection")
    }).pipe(Effect.provide(env())),
  )

  it.effect("request guild members gathers every chunk by nonce", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      const fiber = yield* Effect.forkChild(shard.requestGuildMembers({ guildId: "42", query: "", limit: 0 }))
      yield* settle
      const request = server.commands()[0]!
      assert.strictEqual(request.op, 8)
      const nonce = (request.d as { nonce: string }).nonce
      assert.isAtMost(nonce.length, 32)
      yield* server.emit("GUILD_MEMBERS_CHUNK", {
        guild_id: "42",
        nonce: "other",
        members: [{ id: "x" }],
        chunk_index: 0,
        chunk_count: 1,
      })
      yield* server.emit("GUILD_MEMBERS_CHUNK", {
        guild_id: "42",
        nonce,
        members: [{ id: "1" }],
        chunk_index: 0,
        chunk_count: 2,
      })
      yield* server.emit("GUILD_MEMBERS_CHUNK", {
        guild_id: "42",
        nonce,
        members: [{ id: "2" }],
        chunk_index: 1,
        chunk_count: 2,
      })
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual(result.members as ReadonlyArray<unknown>, [{ id: "1" }, { id: "2" }])
    }).pipe(Effect.provide(env())),
  )

  it.effect("request guild members: RATE_LIMITED becomes a typed error", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      const fiber = yield* Effect.forkChild(
        Effect.flip(shard.requestGuildMembers({ guildId: "42", userIds: ["1"] })),
      )
      yield* settle
      const nonce = (server.commands()[0]!.d as { nonce: string }).nonce
      yield* server.emit("RATE_LIMITED", { opcode: 8, retry_after: 12.5, meta: { guild_id: "42", nonce } })
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "GuildMembersRateLimited")
    }).pipe(Effect.provide(env())),
  )

  it.effect("logout closes with 1000, ends the stream, and forgets the session", () =>
    Effect.gen(function* () {
      const { server, shard } = yield* started()
      const peer = server.peer()!
      yield* shard.logout
      assert.strictEqual(peer.clientCloseCode(), 1000)
      const store = yield* SessionStore.SessionStore
      assert.isTrue((yield* store.load([0, 1]))._tag === "None")
      assert.strictEqual((yield* SubscriptionRef.get(shard.status)).state._tag, "Stopped")
    }).pipe(Effect.provide(env())),
  )

  it.effect(
    "closing the shard's scope closes with a resumable code; a restarted shard resumes from the store",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        const seen: Array<string> = []
        const consume = (shard: Shard.Shard) =>
          Effect.forkChild(
            Stream.runForEach(shard.events, (e) => Effect.sync(() => void seen.push(`${e.type}#${e.seq}`))),
          )
        // first process
        yield* Effect.scoped(
          Effect.gen(function* () {
            const shard = yield* Shard.make(config())
            yield* consume(shard)
            yield* settle
            yield* server.emitMessages(3)
            yield* settle
          }),
        )
        const first = server.peer()!
        assert.strictEqual(first.clientCloseCode(), Protocol.ResumableCloseCode)
        yield* server.emitMessages(2, 0, 4) // while "restarting"
        // second process, same store
        yield* Effect.scoped(
          Effect.gen(function* () {
            const shard = yield* Shard.make(config())
            yield* consume(shard)
            yield* settle
          }),
        )
        assert.strictEqual(server.identifies().length, 1)
        assert.strictEqual(server.resumes(), 1)
        assert.deepStrictEqual(
          seen,
          server.produced().map((e) => `${e.t}#${e.s}`),
        )
      }).pipe(Effect.provide(env())),
  )

  it.effect("a dropping buffer never stalls the socket and counts what it drops", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const shard = yield* Shard.make(config({ events: { capacity: 4, strategy: "dropping" } }))
      yield* settle
      yield* server.emitMessages(20) // nobody consumes
      yield* advance(interval * 3)
      const health = yield* shard.health
      assert.strictEqual(health.dropped, 21 - 4)
      assert.strictEqual(health.state._tag, "Ready", "heartbeats kept flowing")
    }).pipe(Effect.provide(env())),
  )

  it.effect("with back-pressure, a stalled consumer loses nothing and is not taken for a zombie", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const memory = yield* MemoryTransport.MemoryTransport
      const shard = yield* Shard.make(config({ events: { capacity: 4 } }))
      yield* settle
      yield* server.emitMessages(30) // nobody consumes yet
      // Four intervals with the reader held up: ACKs go unread, but that is the consumer's
      // doing, not the server's, so the zombie check is suspended and the link stays.
      yield* advance(interval * 4)
      assert.isTrue(server.peer()!.isOpen(), "not closed as a zombie")
      assert.strictEqual(memory.connectAttempts().length, 1)
      assert.strictEqual(server.resumes(), 0)
      const seen = yield* Stream.runCollect(Stream.take(shard.events, 31).pipe(Stream.timeout(interval * 10)))
      assert.deepStrictEqual(
        seen.map((e) => `${e.type}#${e.seq}`),
        server
          .produced()
          .slice(0, 31)
          .map((e) => `${e.t}#${e.s}`),
      )
      assert.strictEqual((yield* shard.health).dropped, 0)
    }).pipe(Effect.provide(env())),
  )
})

describe("identify throttle across shards", () => {
  it.effect(
    "32 shards, max_concurrency 4: one identify per 5 s per bucket, also for re-identifies after a simultaneous drop",
    () =>
      Effect.gen(function* () {
        const server = yield* ScriptedGateway.ScriptedGateway
        for (let id = 0; id < 32; id++) yield* Shard.make(config({ shard: [id, 32] }))
        yield* advance(60_000)
        const check = (entries: ReadonlyArray<{ shard: number; at: number }>, perBucket: number) => {
          for (let bucket = 0; bucket < 4; bucket++) {
            const times = entries.filter((e) => e.shard % 4 === bucket).map((e) => e.at)
            assert.strictEqual(times.length, perBucket, `bucket ${bucket}`)
            for (let i = 1; i < times.length; i++) assert.isAtLeast(times[i]! - times[i - 1]!, 5_000)
          }
        }
        const initial = server.allIdentifies().slice()
        assert.strictEqual(initial.length, 32)
        check(initial, 8)
        // every session is lost at once: all 32 re-identify, through the same buckets
        for (let id = 0; id < 32; id++) yield* server.close(4009, id)
        yield* advance(120_000)
        const again = server.allIdentifies().slice(32)
        assert.strictEqual(again.length, 32)
        check([...initial, ...again], 16)
      }).pipe(Effect.provide(env({}, 4))),
  )
})

describe("a session store that stops answering", () => {
  const silent: SessionStore.SessionStoreService = {
    load: () => Effect.never,
    save: () => Effect.never,
    clear: () => Effect.never,
  }
  const silentEnv = Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
    Layer.succeed(SessionStore.SessionStore)(silent),
    IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
    fixedRandom,
  )

  it.effect("costs each call at most storeTimeout: the shard starts, runs and shuts down", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const scope = yield* Scope.make()
      const making = yield* Effect.forkChild(
        Shard.make(config({ storeTimeout: 2_000 })).pipe(Scope.provide(scope)),
      )
      yield* advance(1_999)
      assert.isUndefined(making.pollUnsafe(), "still waiting for load")
      yield* advance(1)
      const shard = yield* Fiber.join(making)
      yield* advance(2_000) // READY's save times out too
      assert.strictEqual(server.identifies().length, 1)
      assert.strictEqual((yield* SubscriptionRef.get(shard.status)).state._tag, "Ready")
      // shutdown saves the session: bounded as well
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* advance(5_000)
      assert.isTrue(Option.isSome(Option.fromNullishOr(closing.pollUnsafe())), "shutdown completed")
      assert.isFalse(server.peer()!.isOpen())
    }).pipe(Effect.provide(silentEnv)),
  )
})
