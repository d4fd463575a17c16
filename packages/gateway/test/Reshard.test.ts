/**
 * The reshard's parts on their own: the wave plan, the per-guild handover filter (with a
 * clock of its own) and the periodic `/gateway/bot` check (TestClock). The whole of it under
 * traffic over real sockets is gateway-node's Reshard.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Protocol, Reshard } from "@vigil/gateway"
import { Effect, Fiber, Queue, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Handover from "../src/internal/Handover.ts"
import * as Merged from "../src/internal/Merged.ts"

/** A guild on `shard` of `count` (and, as 2 and 4 go, on `shard` or `shard + 2` of 4). */
const guildOn = (n: number) => String(BigInt(n) << 22n)
const g0 = guildOn(8) // 0 of 2, 0 of 4
const g2 = guildOn(2) // 0 of 2, 2 of 4

let seq = 0
const message = (guild: string, n: number) =>
  Protocol.makeDispatch(++seq, "MESSAGE_CREATE", { id: `${guild}-${n}`, guild_id: guild, nonce: String(n) })
const oldShard = (d: Protocol.Dispatch): Handover.Tagged => ({ shardId: 0, shardCount: 2, dispatch: d })
const newShard = (id: number, d: Protocol.Dispatch): Handover.Tagged => ({
  shardId: id,
  shardCount: 4,
  dispatch: d,
})
const ready = (id: number, guilds: ReadonlyArray<string>) =>
  newShard(
    id,
    Protocol.makeDispatch(1, "READY", { guilds: guilds.map((g) => ({ id: g, unavailable: true })) }),
  )
const guildCreate = (id: number, guild: string) =>
  newShard(id, Protocol.makeDispatch(2, "GUILD_CREATE", { id: guild, name: "g" }))

const setup = () => {
  let now = 0
  const handover = Handover.make(2, 4, { now: () => now })
  handover.begin([0], [0, 2])
  const delivered: Array<string> = []
  const feed = (...events: ReadonlyArray<Handover.Tagged>) => {
    for (const event of events) {
      if (!handover.involves(event)) {
        delivered.push(label(event))
        continue
      }
      const out: Array<Handover.Tagged> = []
      handover.process(event, out)
      delivered.push(...out.map(label))
    }
  }
  const label = (e: Handover.Tagged) =>
    `${e.shardCount === 2 ? "old" : "new"}:${(e.dispatch.data as { nonce?: string }).nonce ?? e.dispatch.type}`
  return {
    handover,
    feed,
    delivered,
    tick: (ms: number) => {
      now += ms
    },
  }
}

describe("Reshard.plan", () => {
  it("waves when the new count is a multiple: old s is replaced by s, s + N, …", () => {
    const plan = Reshard.plan(2, 6, [0, 1])
    assert.strictEqual(plan.mode, "waves")
    assert.deepStrictEqual(plan.waves, [
      { retire: [0], join: [0, 2, 4] },
      { retire: [1], join: [1, 3, 5] },
    ])
    assert.strictEqual(plan.extraConnections, 3)
    assert.deepStrictEqual(Reshard.plan(4, 8, [1]).waves, [{ retire: [1], join: [1, 5] }])
  })

  it("any other count: the whole new set beside the old one", () => {
    const plan = Reshard.plan(3, 5, [0, 1, 2])
    assert.strictEqual(plan.mode, "whole-set")
    assert.deepStrictEqual(plan.waves, [{ retire: [0, 1, 2], join: [0, 1, 2, 3, 4] }])
    assert.strictEqual(Reshard.plan(4, 2, [0, 1, 2, 3]).mode, "whole-set")
  })
})

describe("Handover", () => {
  it("old stream ahead: the new copies it already delivered are dropped; then both merge", () => {
    const { feed, delivered, handover } = setup()
    feed(oldShard(message(g0, 0)), oldShard(message(g0, 1)), ready(0, [g0]), guildCreate(0, g0))
    feed(oldShard(message(g0, 2)), newShard(0, message(g0, 1)), newShard(0, message(g0, 2)))
    feed(
      newShard(0, message(g0, 3)),
      oldShard(message(g0, 3)),
      oldShard(message(g0, 4)),
      newShard(0, message(g0, 4)),
    )
    assert.deepStrictEqual(delivered, ["old:0", "old:1", "old:2", "new:3", "old:4"])
    assert.strictEqual(handover.stats().absorbed, 2) // READY, GUILD_CREATE
    assert.strictEqual(handover.stats().overlaps, 1)
  })

  it("new stream ahead: its copies wait for the overlap, then go in order", () => {
    const { feed, delivered } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0))
    feed(newShard(0, message(g0, 0)), newShard(0, message(g0, 1)))
    assert.deepStrictEqual(delivered, [], "held: the old stream may not have caught up")
    feed(oldShard(message(g0, 0)))
    assert.deepStrictEqual(delivered, ["new:0", "new:1"])
    feed(oldShard(message(g0, 1)), newShard(0, message(g0, 2)), oldShard(message(g0, 2)))
    assert.deepStrictEqual(delivered, ["new:0", "new:1", "new:2"])
  })

  it("two identical events are both kept: copies match by occurrence", () => {
    const { feed, delivered } = setup()
    const typing = () => Protocol.makeDispatch(++seq, "TYPING_START", { guild_id: g0, user_id: "1" })
    feed(ready(0, [g0]), guildCreate(0, g0))
    feed(oldShard(typing()), newShard(0, typing()), oldShard(typing()), newShard(0, typing()))
    assert.deepStrictEqual(delivered, ["old:TYPING_START", "old:TYPING_START"])
  })

  it("a quiet guild is handed over after quietMillis; one with pending copies is not", () => {
    const { feed, handover, tick } = setup()
    feed(ready(2, [g2]), ready(0, [g0]), guildCreate(2, g2))
    assert.deepStrictEqual(handover.progress([0, 2], 500, 60_000), { waiting: 2, notJoined: 1, pending: 0 })
    feed(guildCreate(0, g0), newShard(0, message(g0, 7)))
    tick(499)
    assert.strictEqual(handover.progress([0, 2], 500, 60_000).waiting, 2)
    tick(1)
    assert.deepStrictEqual(handover.progress([0, 2], 500, 60_000), { waiting: 1, notJoined: 0, pending: 1 })
    feed(oldShard(message(g0, 7)))
    assert.strictEqual(handover.progress([0, 2], 500, 60_000).waiting, 0)
  })

  it("a guild without GUILD_CREATE (unavailable) is not waited for past unavailableMillis", () => {
    const { feed, handover, tick } = setup()
    feed(ready(0, [g0]))
    assert.deepStrictEqual(handover.progress([0], 500, 2000), { waiting: 1, notJoined: 1, pending: 0 })
    tick(2000)
    assert.deepStrictEqual(handover.progress([0], 500, 2000), { waiting: 0, notJoined: 1, pending: 0 })
  })

  it("retire: the pending copies the old shard never had go out in order; the new shards then pass straight", () => {
    const { feed, delivered, handover } = setup()
    feed(oldShard(message(g2, 0)), ready(2, [g2]), guildCreate(2, g2), newShard(2, message(g2, 1)))
    assert.deepStrictEqual(delivered, ["old:0"])
    delivered.push(
      ...handover.retire([0], [0, 2]).map((e) => `flushed:${(e.dispatch.data as { nonce: string }).nonce}`),
    )
    assert.deepStrictEqual(delivered, ["old:0", "flushed:1"])
    assert.isFalse(handover.involves(newShard(2, message(g2, 2))))
    assert.strictEqual(handover.size(), 0)
  })

  it("the new stream lagging behind an overlapped guild when the old shard retires: its late copies are still dropped", () => {
    // The interleaving of issue 13: the guild overlapped (so it counted as handed over), the
    // old shard delivered #1 and #2 and retired, and only then did the new shard's copies of
    // them reach the consumer. Dropping the guild's state at the retire delivered them twice.
    const { feed, delivered, handover } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0), oldShard(message(g0, 0)), newShard(0, message(g0, 0)))
    feed(oldShard(message(g0, 1)), oldShard(message(g0, 2)))
    assert.strictEqual(handover.progress([0], 1000, 60_000).waiting, 0, "handed over by the overlap")
    assert.deepStrictEqual(handover.retire([0], [0, 2]), [])
    handover.close()
    assert.isFalse(handover.finished(), "g0's new stream has not passed the old one's end")
    feed(newShard(0, message(g0, 1)), newShard(0, message(g0, 2)))
    assert.isTrue(handover.finished(), "the old tail (#2) matched: the guild drained")
    feed(newShard(0, message(g0, 3)))
    assert.deepStrictEqual(delivered, ["old:0", "old:1", "old:2", "new:3"])
    assert.strictEqual(handover.stats().drained, 1)
    assert.strictEqual(handover.stats().late, 2)
    assert.strictEqual(handover.size(), 0)
  })

  it("a guild handed over by the quiet rule before its new stream showed anything: the time decides no copy", () => {
    const { feed, delivered, handover, tick } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0), oldShard(message(g0, 0)), oldShard(message(g0, 1)))
    tick(1000)
    assert.strictEqual(handover.progress([0], 1000, 60_000).waiting, 0, "quiet for 1 s: handed over")
    assert.deepStrictEqual(handover.retire([0], [0, 2]), [])
    // The new shard was more than the quiet time behind: its copies come only now.
    feed(newShard(0, message(g0, 0)), newShard(0, message(g0, 1)), newShard(0, message(g0, 2)))
    assert.deepStrictEqual(delivered, ["old:0", "old:1", "new:2"])
    assert.strictEqual(handover.size(), 0)
  })

  it("draining ends at the first event the old shard never had (its last one came before the new session)", () => {
    const { feed, delivered, handover } = setup()
    feed(oldShard(message(g0, 0)), ready(0, [g0]), guildCreate(0, g0))
    handover.retire([0], [0, 2])
    handover.close()
    assert.isFalse(handover.finished())
    feed(newShard(0, message(g0, 1)))
    assert.isTrue(handover.finished())
    assert.deepStrictEqual(delivered, ["old:0", "new:1"])
  })

  it("a guild whose new stream already matched the old tail is dropped at the retire; READY after it passes", () => {
    const { feed, delivered, handover } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0), oldShard(message(g0, 0)), newShard(0, message(g0, 0)))
    handover.retire([0], [0, 2])
    handover.close()
    assert.isTrue(handover.finished())
    assert.strictEqual(handover.size(), 0)
    feed(ready(0, [g0])) // a new session of the new shard, later: the consumer's to see
    assert.deepStrictEqual(delivered, ["old:0", "new:READY"])
  })

  it("abort: pending new copies are dropped and their old copies still delivered; delivered ones stay matched", () => {
    const { feed, delivered, handover } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0), oldShard(message(g0, 0)), newShard(0, message(g0, 0)))
    feed(newShard(0, message(g0, 1)))
    feed(newShard(2, message(g2, 5))) // no GUILD_CREATE for it yet: pending
    handover.abort([0], [0, 2])
    feed(oldShard(message(g0, 1)), oldShard(message(g2, 5)))
    // g0 #1: delivered from the new side, its late old copy dropped; g2 #5: from the old side
    assert.deepStrictEqual(delivered, ["old:0", "new:1", "old:5"])
  })

  it("rollback: the old stream lagging behind what the aborted new shard delivered drains, whatever the time", () => {
    // Before, a rollback matched the old copies for `quietMillis` more, then let them pass:
    // an old stream more than that behind delivered them twice.
    const { feed, delivered, handover } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0), newShard(0, message(g0, 0)), newShard(0, message(g0, 1)))
    feed(oldShard(message(g0, 0)), newShard(0, message(g0, 2)))
    assert.deepStrictEqual(delivered, ["new:0", "new:1", "new:2"])
    handover.abort([0], [0, 2]) // the new shards closed, all they sent processed
    handover.release() // the rollback ended
    assert.isFalse(handover.finished(), "old #1 and #2 are still to come")
    feed(oldShard(message(g0, 1)), oldShard(message(g0, 2)))
    assert.isTrue(handover.finished(), "the new shard's last copy (#2) matched")
    feed(oldShard(message(g0, 3)))
    assert.deepStrictEqual(delivered, ["new:0", "new:1", "new:2", "old:3"])
  })

  it("draining is per shard: another filter still gets the events of every other shard", () => {
    const { feed, handover } = setup()
    feed(ready(0, [g0]), guildCreate(0, g0), oldShard(message(g0, 0)), oldShard(message(g0, 1)))
    feed(newShard(0, message(g0, 0)))
    handover.retire([0], [0, 2])
    assert.isTrue(handover.involves(newShard(0, message(g0, 1))), "g0 drains on new shard 0")
    assert.isFalse(handover.involves(newShard(2, message(g2, 1))), "nothing drains on new shard 2")
  })

  it("a guild whose old shard is not in handover (it died) passes straight from the new shard", () => {
    let now = 0
    const handover = Handover.make(2, 4, { now: () => now++ })
    handover.begin([0], [1, 3]) // old shard 1 is dead; 0 is live
    const out: Array<Handover.Tagged> = []
    const g1 = guildOn(1)
    handover.process(newShard(1, Protocol.makeDispatch(2, "GUILD_CREATE", { id: g1 })), out)
    handover.process(newShard(1, message(g1, 0)), out)
    assert.deepStrictEqual(
      out.map((e) => e.dispatch.type),
      ["GUILD_CREATE", "MESSAGE_CREATE"],
    )
  })

  it("fingerprints: messages by id (an edit by its timestamp too), others by a hash of the payload", () => {
    const f = (type: string, data: unknown) => Handover.fingerprint(Protocol.makeDispatch(1, type, data))
    assert.strictEqual(
      f("MESSAGE_CREATE", { id: "5", content: "a" }),
      f("MESSAGE_CREATE", { id: "5", content: "b" }),
    )
    assert.notStrictEqual(
      f("MESSAGE_UPDATE", { id: "5", edited_timestamp: "t1" }),
      f("MESSAGE_UPDATE", { id: "5", edited_timestamp: "t2" }),
    )
    assert.strictEqual(
      f("PRESENCE_UPDATE", { user: { id: "1" }, status: "idle" }),
      f("PRESENCE_UPDATE", { user: { id: "1" }, status: "idle" }),
    )
    assert.notStrictEqual(
      f("PRESENCE_UPDATE", { user: { id: "1" }, status: "idle" }),
      f("PRESENCE_UPDATE", { user: { id: "1" }, status: "dnd" }),
    )
    assert.strictEqual(Handover.guildOf(Protocol.makeDispatch(1, "GUILD_CREATE", { id: g0 })), g0)
    assert.strictEqual(Handover.guildOf(Protocol.makeDispatch(1, "MESSAGE_CREATE", { id: "1" })), "")
  })

  it("pending copies keep their fingerprints past the window: the overlap is still seen", () => {
    let now = 0
    const handover = Handover.make(2, 4, { now: () => now++, window: 8 })
    handover.begin([0], [0, 2])
    const out: Array<Handover.Tagged> = []
    handover.process(ready(0, [g0]), out)
    handover.process(guildCreate(0, g0), out)
    // the new stream 10 events ahead of the old one: more than the window
    for (let i = 10; i < 16; i++) handover.process(newShard(0, message(g0, i)), out)
    for (let i = 0; i < 16; i++) handover.process(oldShard(message(g0, i)), out)
    const label = (e: Handover.Tagged) =>
      `${e.shardCount === 2 ? "old" : "new"}:${(e.dispatch.data as { nonce: string }).nonce}`
    assert.deepStrictEqual(out.map(label), [
      ...Array.from({ length: 10 }, (_, i) => `old:${i}`),
      ...Array.from({ length: 6 }, (_, i) => `new:${10 + i}`),
    ])
  })

  it("memory is bounded: a guild keeps its last `window` fingerprints, and matches only within them", () => {
    const run = (window: number) => {
      let now = 0
      const handover = Handover.make(2, 4, { now: () => now++, window })
      handover.begin([0], [0])
      const out: Array<Handover.Tagged> = []
      for (let i = 0; i < 100; i++) handover.process(oldShard(message(g0, i)), out)
      handover.process(ready(0, [g0]), out)
      handover.process(guildCreate(0, g0), out)
      // a new shard lagging 50 events behind: its copy of #50, then of #99
      handover.process(newShard(0, message(g0, 50)), out)
      handover.process(newShard(0, message(g0, 99)), out)
      return out.length
    }
    assert.strictEqual(run(256), 100)
    assert.strictEqual(run(8), 101, "#50 was past the window: delivered again (the documented limit)")
  })
})

describe("Merged", () => {
  it.effect("sliding: a marker the full buffer evicted still runs, before the events offered after it", () =>
    Effect.gen(function* () {
      const merged = yield* Merged.make({ capacity: 2, strategy: "sliding" })
      const offer = (n: number) =>
        Queue.offerUnsafe(
          merged.queue,
          merged.stamp(
            oldShard(Protocol.makeDispatch(n, "MESSAGE_CREATE", { id: String(n), nonce: String(n) })),
          ),
        )
      offer(1)
      offer(2)
      const marked = yield* Effect.forkChild(
        merged.mark(() => [oldShard(Protocol.makeDispatch(0, "RETIRED", { nonce: "marker" }))]),
      )
      yield* Effect.yieldNow // the marker is in: #1 evicted
      offer(3)
      offer(4) // #2 evicted, then the marker
      const got = yield* merged.events.pipe(Stream.take(3), Stream.runCollect)
      assert.deepStrictEqual(
        got.map((e) => (e.dispatch.data as { nonce: string }).nonce),
        ["marker", "3", "4"],
      )
      yield* Fiber.join(marked) // the reshard waiting on it goes on
    }),
  )

  it.effect("sliding: a marker evicted by the next one still runs first", () =>
    Effect.gen(function* () {
      const merged = yield* Merged.make({ capacity: 1, strategy: "sliding" })
      const marker = (nonce: string) => () => [oldShard(Protocol.makeDispatch(0, "MARK", { nonce }))]
      const first = yield* Effect.forkChild(merged.mark(marker("first")))
      yield* Effect.yieldNow
      const second = yield* Effect.forkChild(merged.mark(marker("second"))) // evicts the first
      yield* Effect.yieldNow
      const got = yield* merged.events.pipe(Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(
        got.map((e) => (e.dispatch.data as { nonce: string }).nonce),
        ["first", "second"],
      )
      yield* Fiber.join(first)
      yield* Fiber.join(second)
    }),
  )
})

describe("Reshard.watchRecommendation", () => {
  it.effect("checks every interval and reshards only when the recommendation rises", () =>
    Effect.gen(function* () {
      const answers = [2, 2, 4, 4]
      let current = 2
      const asked: Array<number> = []
      const resharded: Array<number> = []
      const fiber = yield* Effect.forkChild(
        Reshard.watchRecommendation({
          interval: "8 hours",
          recommended: Effect.sync(() => {
            const answer = answers[asked.length] ?? 4
            asked.push(answer)
            return answer
          }),
          current: () => current,
          reshard: (count) =>
            Effect.sync(() => {
              resharded.push(count)
              current = count
            }),
        }),
      )
      yield* TestClock.adjust("8 hours")
      assert.deepStrictEqual(asked, [2])
      yield* TestClock.adjust("7 hours")
      assert.deepStrictEqual(asked, [2])
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(resharded, [])
      yield* TestClock.adjust("8 hours")
      assert.deepStrictEqual(resharded, [4])
      yield* TestClock.adjust("8 hours")
      assert.deepStrictEqual(asked, [2, 2, 4, 4])
      assert.deepStrictEqual(resharded, [4], "not again at the same count")
      yield* Fiber.interrupt(fiber)
    }),
  )

  it.effect("a failed check is logged and the next one still comes", () =>
    Effect.gen(function* () {
      let calls = 0
      const resharded: Array<number> = []
      const fiber = yield* Effect.forkChild(
        Reshard.watchRecommendation({
          interval: "1 hour",
          recommended: Effect.suspend(() => (++calls === 1 ? Effect.fail("unreachable") : Effect.succeed(3))),
          current: () => 2,
          reshard: (count) => Effect.sync(() => void resharded.push(count)),
        }),
      )
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(resharded, [])
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(resharded, [3])
      yield* Fiber.interrupt(fiber)
    }),
  )
})
