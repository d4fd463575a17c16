/**
 * Two owners of one shard in one process, each with its own pool on PostgreSQL, against a
 * FakeGateway: when the second takes the shard (a newer epoch), the first's next save is
 * refused and it stops at once (socket closed, its app's stream ended) while the second waits
 * out its lease, then RESUMEs; the gateway never holds two open sockets for the shard, no event
 * is lost, and the stored session is the new owner's. Each start is one `vigil.handoff` span.
 */
import { assert, describe, it } from "@effect/vitest"
import { PgDatabase, PgShardOwners, ShardSingleton } from "@vigil/cluster"
import { IdentifyThrottle, type SessionStore, type Shard } from "@vigil/gateway"
import { NodeCompression, NodeTransport } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as TcpProxy from "@vigil/testing/TcpProxy"
import { Effect, Fiber, Layer, Logger, Redacted, Stream, SubscriptionRef, Tracer } from "effect"
import { SqlClient } from "effect/sql"
import * as TestDatabase from "./TestDatabase.ts"

const token = "fencing-test-token"
const key: SessionStore.ShardKey = [0, 1]

// The older owner renews every 4 s and the newer one takes the shard just after one of its
// renewals: its save every 100 ms, not a renewal, is what finds the newer epoch.
const slowRenewals = {
  shardLockExpiration: "6 seconds",
  fenceAfter: "5 seconds",
  renewInterval: "4 seconds",
} as const
const newOwner = { ...slowRenewals, renewInterval: "500 millis" } as const
// The cluster fixture's: lease renewed every 0.5 s, fenced 2 s after the last renewal, lock expiry 3 s.
// A takeover from an owner cut off from the database cannot learn that its socket is closed:
// it waits until this test's gateway (heartbeat 1 s) has surely dropped it, 4 s past the lease.
const fixtureTimings = {
  shardLockExpiration: "3 seconds",
  fenceAfter: "2 seconds",
  renewInterval: "500 millis",
  gatewayDropAfter: "4 seconds",
} as const

/** A runner in this process: its own pool, owners and logs; what its app handled. */
const runner = (
  gatewayUrl: string,
  tracer: Tracer.Tracer,
  name: string,
  timings: PgShardOwners.PgShardOwnersOptions = slowRenewals,
  database: Layer.Layer<SqlClient.SqlClient, never, TestDatabase.TestDatabase> = TestDatabase.client({
    maxConnections: 3,
  }),
) =>
  Effect.gen(function* () {
    const handled: Array<number> = []
    const logs: Array<string> = []
    let streamEnded = false
    let status: SubscriptionRef.SubscriptionRef<Shard.ShardStatus> | undefined
    const owners = PgShardOwners.layer({ ...timings, owner: name }).pipe(Layer.provide(database))
    const fiber = yield* ShardSingleton.runShard(key, {
      shards: [key],
      config: {
        token: Redacted.make(token),
        intents: 513,
        gatewayUrl,
        sessionSave: { interval: "100 millis", events: 1 },
      },
      run: (shard) =>
        Effect.sync(() => {
          status = shard.status
        }).pipe(
          Effect.andThen(
            Stream.runForEach(shard.events, (event) => Effect.sync(() => handled.push(event.seq))),
          ),
          Effect.ensuring(Effect.sync(() => (streamEnded = true))),
        ),
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          owners,
          NodeTransport.layer(),
          NodeCompression.layer,
          IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
        ),
      ),
      Effect.provide(Logger.layer([Logger.make(({ message }) => void logs.push(String(message)))])),
      Effect.provideService(Tracer.Tracer, tracer),
      Effect.forkScoped,
    )
    const state = Effect.suspend(() =>
      status ? Effect.map(SubscriptionRef.get(status), (s) => s.state) : Effect.succeed(undefined),
    )
    return { fiber, handled, logs, streamEnded: () => streamEnded, state }
  })

/** Spans, as a tracer keeps them. */
const capture = () => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = Tracer.nativeTracer.span(options)
      spans.push(span)
      return span
    },
  })
  return { spans, tracer }
}

/** Open sockets for shard 0 now, and the most at any instant (watched every 5 ms). */
const watch = (gateway: FakeGateway.FakeGatewayService) =>
  Effect.gen(function* () {
    const open = Effect.map(
      gateway.connections,
      // Every socket, authenticated or not: a resume opens its socket before it names its shard.
      (all) => all.filter((c) => c.state === "open").length,
    )
    let most = 0
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.andThen(
          Effect.map(open, (n) => {
            most = Math.max(most, n)
          }),
          Effect.sleep("5 millis"),
        ),
      ),
    )
    const identified = Effect.map(gateway.connections, (all) =>
      all.some((c) => c.state === "open" && c.shard?.[0] === 0),
    )
    return { open, identified, most: () => most }
  })

/** The gateway never had to drop a live connection because another resumed its session. */
const noSupersededConnection = (gateway: FakeGateway.FakeGatewayService) =>
  Effect.map(gateway.entries, (entries) =>
    assert.deepStrictEqual(
      entries.filter((entry) => entry._tag === "Fault" && entry.fault === "superseded"),
      [],
      "a resume took the session from a live connection",
    ),
  )

describe("ShardSingleton fencing", () => {
  it.live(
    "a newer owner: the older one's save is refused and it stops at once; the new one resumes, its row intact",
    () =>
      Effect.gen(function* () {
        const { spans, tracer } = capture()
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { open, identified, most } = yield* watch(gateway)

        const a = yield* runner(gateway.url, tracer, "a")
        const first = yield* eventually(identified, "the first owner connected", "20 seconds").pipe(
          Effect.andThen(gateway.emit({ shard: 0 }, { count: 20 })),
        )
        yield* eventually(() => a.handled.includes(first.at(-1)!), "the first events handled", "20 seconds")

        // Traffic while the shard changes hands.
        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 100, perSecond: 25 }))
        const sql = yield* SqlClient.SqlClient
        const context = yield* Effect.context<SqlClient.SqlClient>()
        const owner = sql<{
          epoch: number
          lease: string
        }>`SELECT epoch::float8 AS epoch, lease_until::text AS lease FROM vigil_shard_owners`.pipe(
          Effect.map((rows) => rows[0]),
          Effect.orDie,
          Effect.provide(context),
        )
        const epoch = Effect.map(owner, (row) => row?.epoch)
        const lease = (yield* owner)?.lease
        yield* eventually(
          Effect.map(owner, (row) => row?.lease !== lease),
          "the older owner's next renewal",
          "20 seconds",
        )
        const b = yield* runner(gateway.url, tracer, "b", newOwner)
        yield* eventually(
          Effect.map(Effect.provide(epoch, context), (e) => e === 2),
          "the newer epoch taken",
          "20 seconds",
        )
        const takenAt = Date.now()
        // The older owner finds out at its next save (every 100 ms under traffic) and stops.
        yield* eventually(
          Effect.map(open, (n) => n === 0),
          "the older owner's socket closed",
          "10 seconds",
        )
        const stoppedAfter = Date.now() - takenAt
        assert.isBelow(stoppedAfter, 1_500, "the fenced owner took too long to stop")
        assert.isTrue(
          a.logs.some((line) => line.includes("save was refused")),
          `not stopped by a refused save: ${a.logs.join("\n")}`,
        )
        assert.isTrue(a.logs.some((line) => line.includes("shard fenced")))
        yield* eventually(a.streamEnded, "the older owner's app stream ended", "5 seconds")
        const fencedState = yield* a.state
        assert.strictEqual(fencedState?._tag, "Stopped")
        assert.include(
          fencedState?._tag === "Stopped" ? fencedState.reason : "",
          "fenced: another runner took it",
        )
        const handledByA = a.handled.length

        const sent = [...first, ...(yield* Fiber.join(traffic))]
        yield* eventually(
          () => b.handled.includes(sent.at(-1)!),
          "the new owner handled the rest",
          "30 seconds",
        )
        assert.strictEqual(a.handled.length, handledByA, "the fenced owner handled events after it stopped")
        const seen = new Set([...a.handled, ...b.handled])
        for (const seq of sent) assert.isTrue(seen.has(seq), `event ${seq} lost`)
        assert.strictEqual(
          (yield* gateway.sessions).length,
          1,
          "the new owner identified instead of resuming",
        )
        assert.isAtMost(most(), 1, "two open sockets for one shard")
        yield* noSupersededConnection(gateway)

        // The row is the new owner's, up to the last event its app is known to have finished: the
        // one before the last (the last counts once the app asks for another, or leaves); the
        // fenced owner's writes are refused.
        const stored = sql<{
          sequence: number
        }>`SELECT sequence::float8 AS sequence FROM vigil_sessions`.pipe(
          Effect.map((rows) => rows[0]?.sequence),
          Effect.orDie,
        )
        yield* eventually(
          Effect.map(Effect.provide(stored, context), (s) => s === b.handled.at(-2)),
          "the new owner's sequence stored",
          "10 seconds",
        )
        yield* Fiber.interrupt(a.fiber) // its shutdown writes nothing
        assert.strictEqual(yield* stored, b.handled.at(-2))

        // One hand-off span per start: shard, epoch, how it began; never the token.
        const handoffs = spans.filter((span) => span.name === "vigil.handoff")
        const attributes = handoffs.map((span) => Object.fromEntries(span.attributes))
        assert.deepStrictEqual(
          attributes.map((a) => [
            a["vigil.shard.id"],
            a["vigil.shard.count"],
            a["vigil.handoff.epoch"],
            a["vigil.handoff.outcome"],
          ]),
          [
            [0, 1, 1, "identified"],
            [0, 1, 2, "resumed"],
          ],
        )
        assert.isAbove(Number(attributes[1]!["vigil.handoff.waited_ms"]), 0)
        for (const span of handoffs) assert.strictEqual(span.status._tag, "Ended")
        assert.notInclude(JSON.stringify(spans.map((s) => [...s.attributes])), token)
      }).pipe(Effect.provide(TestDatabase.layer)),
    90_000,
  )

  it.live(
    "the owner's database connection cut: its lease runs out and it closes its socket before the lock expiry; the next owner waits for that",
    () =>
      Effect.gen(function* () {
        const { spans, tracer } = capture()
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { open, identified, most } = yield* watch(gateway)
        const { url } = yield* TestDatabase.TestDatabase
        const target = new URL(Redacted.value(url))
        const proxy = yield* TcpProxy.make({
          target: { host: target.hostname, port: Number(target.port || 5432) },
        })
        target.hostname = "127.0.0.1"
        target.port = String(proxy.port)
        const throughProxy = PgDatabase.layer({
          url: Redacted.make(target.toString()),
          maxConnections: 3,
        }).pipe(Layer.orDie)

        const a = yield* runner(gateway.url, tracer, "a", fixtureTimings, throughProxy)
        const first = yield* eventually(identified, "the first owner connected", "20 seconds").pipe(
          Effect.andThen(gateway.emit({ shard: 0 }, { count: 20 })),
        )
        yield* eventually(() => a.handled.includes(first.at(-1)!), "the first events handled", "20 seconds")
        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 100, perSecond: 25 }))
        yield* Effect.sleep("500 millis")

        // A partition from the database: links reset, no new one accepted. The worst case for
        // the next owner: its engine may take the lock at once (a reset connection frees it).
        yield* proxy.refuse(true)
        yield* proxy.cut
        const cutAt = Date.now()
        const b = yield* runner(gateway.url, tracer, "b", fixtureTimings)
        yield* eventually(
          Effect.map(open, (n) => n === 0),
          "the cut owner's socket closed",
          "10 seconds",
        )
        const closedAfter = Date.now() - cutAt
        assert.isBelow(closedAfter, 3_000, "the cut owner kept its socket past the lock expiry")
        assert.isTrue(
          a.logs.some((line) => line.includes("shard fenced") && line.includes("lease was not renewed")),
          a.logs.join("\n"),
        )
        yield* eventually(a.streamEnded, "the cut owner's app stream ended", "5 seconds")
        const fencedState = yield* a.state
        assert.include(
          fencedState?._tag === "Stopped" ? fencedState.reason : "",
          "fenced: its lease was not renewed",
        )
        const handledByA = a.handled.length

        const sent = [...first, ...(yield* Fiber.join(traffic))]
        yield* eventually(
          () => b.handled.includes(sent.at(-1)!),
          "the new owner handled the rest",
          "30 seconds",
        )
        assert.strictEqual(a.handled.length, handledByA, "the fenced owner handled events after it stopped")
        const seen = new Set([...a.handled, ...b.handled])
        for (const seq of sent) assert.isTrue(seen.has(seq), `event ${seq} lost`)
        assert.strictEqual(
          (yield* gateway.sessions).length,
          1,
          "the new owner identified instead of resuming",
        )
        assert.isAtMost(most(), 1, "two open sockets for one shard")
        yield* noSupersededConnection(gateway)
        const handoff = spans.filter((span) => span.name === "vigil.handoff").at(-1)!
        assert.isAbove(Number(Object.fromEntries(handoff.attributes)["vigil.handoff.waited_ms"]), 0)
      }).pipe(Effect.provide(TestDatabase.layer)),
    90_000,
  )
})
