/**
 * The shard against servers of their own (scripted per connection over the in-memory
 * transport, every timing decided by TestClock): servers that end every connection right
 * after the handshake, and one that numbers READY 0.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, ReconnectPolicy, SessionStore, Shard } from "@vigil/gateway"
import { type MemoryPeer, MemoryTransport } from "@vigil/gateway/testing/MemoryTransport"
import * as Payloads from "@vigil/gateway/testing/Payloads"
import * as Settle from "@vigil/gateway/testing/Settle"
import { Effect, Layer, Random, Redacted, Stream, SubscriptionRef } from "effect"

const interval = 41_250

const env = Layer.mergeAll(
  MemoryTransport.layer,
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 }),
)

const config: Shard.ShardConfig = {
  token: Redacted.make("hostile-test-token"),
  intents: 1,
  shard: [0, 1],
  gatewayUrl: "memory://gateway",
}

interface Script {
  /** READY's sequence number (Discord: 1; some compatible servers: 0). */
  readonly readySeq?: number
  /** READY's `resume_gateway_url`. */
  readonly resumeUrl?: string
  /** What the server does once READY or RESUMED is out. */
  readonly after: (peer: MemoryPeer) => Effect.Effect<void>
}

/** Serves every connection: Hello, READY for Identify, RESUMED for Resume, then `after`. */
const serve = (script: Script) =>
  Effect.gen(function* () {
    const memory = yield* MemoryTransport
    let seq = (script.readySeq ?? 1) - 1
    const connection = (peer: MemoryPeer) =>
      Effect.gen(function* () {
        yield* peer.send(Payloads.hello(interval))
        while (true) {
          const frame = yield* peer.nextFrame
          if (frame.op === 2) {
            const data = Payloads.readyData("session-hostile", [0, 1], script.resumeUrl)
            yield* peer.send(Payloads.dispatch(++seq, "READY", data))
            break
          }
          if (frame.op === 6) {
            yield* peer.send(Payloads.dispatch(++seq, "RESUMED", null))
            break
          }
        }
        yield* script.after(peer)
      }).pipe(Effect.ignore)
    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(memory.accept, (p) => Effect.forkScoped(connection(p)))),
    )
    return memory
  })

/** Runs a shard for `seconds` of virtual time; the clock times of its connection attempts. */
const attemptsOver = (script: Script, seconds: number) =>
  Effect.gen(function* () {
    const memory = yield* serve(script)
    const shard = yield* Shard.make(config)
    yield* Effect.forkChild(Stream.runDrain(shard.events))
    yield* Settle.settle
    for (let i = 0; i < seconds; i++) yield* Settle.advance(1_000)
    return { attempts: memory.connectAttempts(), shard }
  })

const gapsOf = (times: ReadonlyArray<number>) => times.slice(1).map((t, i) => t - times[i]!)

const endings: Array<[string, (peer: MemoryPeer) => Effect.Effect<void>]> = [
  ...[1005, 3000, 4000, 4001, 4002, 4006, 4999].map(
    (code): [string, (peer: MemoryPeer) => Effect.Effect<void>] => [`close ${code}`, (p) => p.close(code)],
  ),
  ["a dropped link (1006)", (p) => p.drop],
  ["op 7", (p) => p.send(Payloads.reconnect)],
  ["a malformed frame", (p) => p.sendRaw("{not json")],
]

describe("Shard: a server that ends every connection right after READY/RESUMED", () => {
  it.effect.each(endings)("%s: attempts at most 1/s and backing off", ([, end]) =>
    Effect.gen(function* () {
      const { attempts } = yield* attemptsOver({ after: end }, 60)
      const gaps = gapsOf(attempts)
      // READY/RESUMED alone proves nothing: each attempt is the next failure in a row, so
      // the waits double from the 1 s floor (equal jitter 0.5 → 750 raised to 1000, then
      // 1500, 3000, …): 7 attempts in 60 s instead of one per millisecond.
      assert.deepStrictEqual(gaps, [1_000, 1_500, 3_000, 6_000, 12_000, 24_000])
      assert.isTrue(
        gaps.every((g) => g >= ReconnectPolicy.attemptFloorMillis),
        "never two attempts within 1 s",
      )
    }).pipe(Effect.provide(env)),
  )

  it.effect("even one that ACKs a heartbeat first (healthy every time) gets one attempt per second", () =>
    Effect.gen(function* () {
      const { attempts } = yield* attemptsOver(
        {
          after: (peer) =>
            Effect.gen(function* () {
              yield* peer.send(Payloads.heartbeatRequest)
              while ((yield* peer.nextFrame).op !== 1) {}
              yield* peer.send(Payloads.ack)
              yield* peer.close(4000)
            }).pipe(Effect.ignore),
        },
        60,
      )
      const gaps = gapsOf(attempts)
      assert.isAtMost(attempts.length, 61)
      assert.isTrue(
        gaps.every((g) => g === ReconnectPolicy.attemptFloorMillis),
        `the floor holds: ${gaps}`,
      )
    }).pipe(Effect.provide(env)),
  )
})

describe("Shard: a server that numbers READY 0", () => {
  it.effect("delivers READY and every event after it", () =>
    Effect.gen(function* () {
      yield* serve({
        readySeq: 0,
        after: (peer) =>
          Effect.forEach(
            [1, 2],
            (s) => peer.send(Payloads.dispatch(s, "MESSAGE_CREATE", { id: String(s) })),
            {
              discard: true,
            },
          ),
      })
      const shard = yield* Shard.make(config)
      const seen: Array<string> = []
      yield* Effect.forkChild(
        Stream.runForEach(shard.events, (e) => Effect.sync(() => void seen.push(`${e.type}#${e.seq}`))),
      )
      yield* Settle.settle
      assert.deepStrictEqual(seen, ["READY#0", "MESSAGE_CREATE#1", "MESSAGE_CREATE#2"])
      const health = yield* shard.health
      assert.strictEqual(health.duplicates, 0)
      assert.strictEqual((yield* SubscriptionRef.get(shard.status)).state._tag, "Ready")
    }).pipe(Effect.provide(env)),
  )

  it.effect("a READY whose resume_gateway_url is no URL: the shard resumes through the gateway URL", () =>
    Effect.gen(function* () {
      let drops = 1
      const memory = yield* serve({
        resumeUrl: "not a url",
        after: (peer) => (drops-- > 0 ? peer.drop : Effect.void),
      })
      const shard = yield* Shard.make(config)
      yield* Effect.forkChild(Stream.runDrain(shard.events))
      yield* Settle.settle
      yield* Settle.advance(2_000)
      const status = yield* SubscriptionRef.get(shard.status)
      assert.strictEqual(status.state._tag, "Ready")
      assert.strictEqual(status.resumes, 1)
      assert.deepStrictEqual(
        memory.peers().map((p) => p.url.split("?")[0]),
        ["memory://gateway", "memory://gateway"],
      )
    }).pipe(Effect.provide(env)),
  )
})
