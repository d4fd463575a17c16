/**
 * The adversarial suite (issue 15): one case per hostile server behaviour and per close
 * code, each a real Shard against FakeGateway on real sockets and clocks, a few seconds
 * long, each checking what must hold whatever the server does (see `harness.ts`): at most
 * one connection attempt per second sustained, one socket at a time, nothing left open, the
 * token nowhere; and after a fatal code, no connection at all.
 */
import { assert, describe, it } from "@effect/vitest"
import { Invariants, Recording } from "@vigil/testing"
import { Effect, Exit } from "effect"
import { type Outcome, run, token } from "./harness.ts"

const presence = { since: null, activities: [], status: "online", afk: false }

const readied = (out: Outcome) => out.statuses.some((s) => s.state._tag === "Ready")

/** When the scripted end of the first connection was queued (the server's clock). */
const endedAt = (out: Outcome) => Recording.faults(out.entries, "end-after-handshake")[0]!.at

const heartbeats = (out: Outcome) => Recording.received(out.entries, 1).length

const rateLimited = (out: Outcome) =>
  Recording.only(out.entries, "Rejected").filter((r) => r.code === 4008).length

describe.concurrent("a server that ends every connection right after READY/RESUMED", () => {
  const endings = [
    { name: "close 1000", end: { close: 1000 } },
    { name: "close 1001", end: { close: 1001 } },
    { name: "no close code (1005)", end: { close: 1005 } },
    { name: "TCP dropped (1006)", end: { close: 1006 } },
    { name: "close 3000", end: { close: 3000 } },
    { name: "close 4000", end: { close: 4000 } },
    { name: "close 4001", end: { close: 4001 } },
    { name: "close 4002", end: { close: 4002 } },
    { name: "close 4003", end: { close: 4003 } },
    { name: "close 4005", end: { close: 4005 } },
    { name: "close 4006", end: { close: 4006 } },
    { name: "close 4007", end: { close: 4007 } },
    { name: "close 4008", end: { close: 4008 } },
    { name: "close 4009", end: { close: 4009 } },
    { name: "close 4999", end: { close: 4999 } },
    { name: "close 4000, TCP held open 1.5 s", end: { close: 4000, linger: 1_500 } },
    { name: "op 7", end: "reconnect" },
    { name: "a malformed frame", end: "malformed" },
  ] as const

  for (const c of endings) {
    it.live(`${c.name}: at most one attempt a second`, () =>
      Effect.gen(function* () {
        const out = yield* run({ gateway: { endAfterHandshake: c.end }, millis: 4_000 })
        assert.isTrue(readied(out), "the shard reached READY")
        assert.isAtLeast(out.attempts.length, 2, "the server did end connections")
        assert.deepStrictEqual(out.violations, [])
      }),
    )
  }
})

describe.concurrent("a fatal close code stops the shard, and nothing connects again", () => {
  const fatal = [
    { code: 4004, tag: "AuthenticationFailed" },
    { code: 4010, tag: "InvalidShard" },
    { code: 4011, tag: "ShardingRequired" },
    { code: 4012, tag: "InvalidApiVersion" },
    { code: 4013, tag: "InvalidIntents" },
    { code: 4014, tag: "DisallowedIntents" },
  ] as const

  for (const { code, tag } of fatal) {
    it.live(`${code} → ${tag}`, () =>
      Effect.gen(function* () {
        const out = yield* run({ gateway: { endAfterHandshake: { close: code } }, millis: 2_500 })
        assert.isTrue(
          out.stopped !== undefined && Exit.isFailure(out.stopped),
          "the shard stopped with an error",
        )
        assert.include(Invariants.text(out.statuses.at(-1)), tag)
        assert.deepStrictEqual(
          [...out.violations, ...Invariants.noConnectionAfterFatal(out.attempts, endedAt(out))],
          [],
        )
      }),
    )

    it.live(`${code} in a close frame whose TCP close never follows → ${tag}`, () =>
      Effect.gen(function* () {
        const out = yield* run({
          gateway: { heartbeatInterval: 100, endAfterHandshake: { close: code, linger: 2_000 } },
          millis: 4_000,
        })
        assert.isTrue(
          out.stopped !== undefined && Exit.isFailure(out.stopped),
          "the shard stopped with an error",
        )
        assert.include(Invariants.text(out.statuses.at(-1)), tag)
        assert.deepStrictEqual(
          [...out.violations, ...Invariants.noConnectionAfterFatal(out.attempts, endedAt(out))],
          [],
        )
      }),
    )
  }

  it.live("every command settles: sent before and after the stop, each ends with a typed outcome", () =>
    Effect.gen(function* () {
      const out = yield* run({
        gateway: { endAfterHandshake: { close: 4004 } },
        millis: 1_500,
        act: (_, shard) =>
          Effect.gen(function* () {
            const before = yield* Effect.forkChild(shard.send(3, presence))
            yield* Effect.exit(shard.await)
            const after = yield* Effect.forkChild(shard.send(3, presence))
            const violations = yield* Invariants.commandsSettle(
              [
                { label: "send before the stop", fiber: before },
                { label: "send after the stop", fiber: after },
              ],
              2_000,
            )
            assert.deepStrictEqual(violations, [])
          }),
      })
      assert.deepStrictEqual(out.violations, [])
    }),
  )
})

describe.concurrent("other hostile servers", () => {
  it.live("ACKs heartbeats but never answers Identify/Resume: the handshake times out", () =>
    Effect.gen(function* () {
      const out = yield* run({
        gateway: { heartbeatInterval: 250, ignoreHandshake: true },
        shard: { handshakeTimeout: 1_000 },
        millis: 4_500,
      })
      assert.isAtLeast(out.attempts.length, 2, "the shard gave the silent connection up")
      assert.isTrue(
        out.statuses.some((s) => s.lastError?.tag === "HandshakeTimeout"),
        "as a handshake timeout",
      )
      assert.deepStrictEqual(out.violations, [])
    }),
  )

  it.live("an op 1 storm is answered a few times, never past the send limit", () =>
    Effect.gen(function* () {
      const out = yield* run({
        millis: 3_000,
        act: (gateway) => Effect.asVoid(gateway.flood("latest", 1, 5_000)),
      })
      assert.isTrue(readied(out))
      assert.isAtMost(heartbeats(out), 20)
      assert.strictEqual(rateLimited(out), 0, "the server never closed with 4008")
      assert.deepStrictEqual(out.violations, [])
    }),
  )

  it.live("an op 7 storm: one reconnect, then the shard is ready again", () =>
    Effect.gen(function* () {
      const out = yield* run({
        millis: 3_000,
        act: (gateway) => Effect.asVoid(gateway.flood("latest", 7, 500)),
      })
      assert.strictEqual(Recording.resumeCount(out.entries), 1, "resumed once")
      assert.isAtMost(out.attempts.length, 3)
      assert.strictEqual(out.statuses.at(-1)?.state._tag, "Ready")
      assert.deepStrictEqual(out.violations, [])
    }),
  )

  it.live("a 1 ms heartbeat interval: heartbeats stay within the send limit", () =>
    Effect.gen(function* () {
      const out = yield* run({ gateway: { heartbeatInterval: 1, heartbeatGrace: 60_000 }, millis: 3_000 })
      assert.isTrue(readied(out))
      // 120 commands per 60 s is 2 a second, heartbeats included.
      assert.isAtMost(heartbeats(out), 3 * 2 + 2)
      assert.strictEqual(rateLimited(out), 0, "the server never closed with 4008")
      assert.deepStrictEqual(out.violations, [])
    }),
  )

  it.live("a close reason that echoes the token: the token reaches no status, log or span", () =>
    Effect.gen(function* () {
      const out = yield* run({
        millis: 2_500,
        act: (gateway) =>
          Effect.asVoid(gateway.close("latest", 4000, { reason: `your token ${token} is bad` })),
      })
      assert.isAtLeast(out.attempts.length, 2, "the close happened")
      assert.deepStrictEqual(out.violations, [])
    }),
  )
})
