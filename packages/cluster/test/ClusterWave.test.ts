/**
 * One wave of a cluster reshard (`internal/Wave.ts`) in this process, over real sockets against
 * the fake gateway: the old shard's reader held with a burst unread when its guilds go quiet,
 * so the burst (on no new session) is the old shard's tail, read after its close. A runner
 * killed right after the wave is marked `handed` keeps only what its app had finished by then
 * (the new sessions replay from their READY, which the burst precedes): that must be all of it,
 * the app slow enough that part of the burst still waits in the merged buffer as s ends.
 */
import { assert, describe, it } from "@effect/vitest"
import { ShardOwners } from "@vigil/cluster"
import { IdentifyThrottle, type Protocol, SessionStore, type Transport } from "@vigil/gateway"
import { GatewayTransport } from "@vigil/gateway/Transport"
import { NodeTransport } from "@vigil/gateway-node"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as GuildTraffic from "@vigil/testing/GuildTraffic"
import * as Invariants from "@vigil/testing/Invariants"
import * as Traffic from "@vigil/testing/Traffic"
import { Effect, Layer, Option, Redacted, Scope, Stream } from "effect"
import * as Wave from "../src/internal/Wave.ts"

const token = "cluster-wave-test-token"
const guilds = Traffic.guildIds(40, 2)

/**
 * Real sockets; before the first identify of a new shard (count `to`) goes out, `gate` runs
 * (the burst, to the old session only), and the old shard's next read after it is held
 * `holdMillis`: the burst is still unread when the quiet rule hands its guilds over.
 */
const gated = (from: number, to: number, holdMillis: number, gate: Effect.Effect<void>) => {
  const inner = NodeTransport.make()
  let opened = false
  return {
    connect: (url: string) =>
      Effect.map(inner.connect(url), (socket) => {
        let old = false
        let held = false
        return {
          ...socket,
          receive: Effect.tap(socket.receive, () =>
            Effect.suspend(() => {
              if (!old || !opened || held) return Effect.void
              held = true
              return Effect.sleep(holdMillis)
            }),
          ),
          send: (text: string) =>
            Effect.suspend(() => {
              const payload = JSON.parse(text) as { op?: number; d?: { shard?: [number, number] } }
              if (payload.op === 2 && payload.d?.shard?.[1] === from) old = true
              if (payload.op !== 2 || payload.d?.shard?.[1] !== to || opened) return socket.send(text)
              opened = true
              return Effect.andThen(gate, socket.send(text))
            }),
        }
      }),
  } satisfies Transport.GatewayTransport["Service"]
}

describe("a cluster reshard wave", () => {
  it.live(
    "1 → 2 with the old shard's burst unread when its guilds go quiet: finished before the wave is marked handed",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          guilds,
          shards: 1,
          maxConcurrency: 1,
          identifyWindow: 150,
          // the held read must not look like a zombie
          heartbeatInterval: 10_000,
        })
        const handled: Array<Protocol.Dispatch> = []
        let atMark: ReadonlyArray<Protocol.Dispatch> | undefined
        let log: GuildTraffic.Log | undefined
        const gate = Effect.gen(function* () {
          const traffic = yield* GuildTraffic.start(gateway, { guilds, rounds: 3 })
          log = yield* traffic.done
        })
        const transport = gated(1, 2, 2000, Scope.provide(gate, yield* Effect.scope))
        const store = SessionStore.makeMemory()
        const layers = Layer.mergeAll(
          Layer.succeed(GatewayTransport)(transport),
          ShardOwners.ShardOwners.layerUnfenced,
          Layer.effect(IdentifyThrottle.IdentifyThrottle)(
            IdentifyThrottle.make({
              maxConcurrency: 1,
              windowMillis: 200,
              sessionStartLimit: { total: 1000, remaining: 1000, resetAfterMillis: 86_400_000 },
            }),
          ),
        ).pipe(Layer.provide(Layer.succeed(SessionStore.SessionStore)(store)))
        const result = yield* Wave.run(
          [0],
          [0, 1],
          1,
          2,
          {
            shards: [[0, 1]],
            config: {
              token: Redacted.make(token),
              intents: 513,
              gatewayUrl: gateway.url,
              sessionSave: { interval: "100 millis", events: 1 },
            },
            // A slow app: s's events are still in the merged buffer, unpulled, as s ends.
            run: (_shard, running) =>
              Stream.runForEach(running.events, (event) =>
                Effect.andThen(
                  Effect.sleep(5),
                  Effect.sync(() => handled.push(event.dispatch)),
                ),
              ),
          },
          { reshard: { quietMillis: 300, waveTimeout: "20 seconds" }, drainTimeout: "10 seconds" },
          new Map(),
          // The runner killed right here: what its app finished is all it ever finishes.
          Effect.sync(() => {
            atMark = [...handled]
          }),
          Effect.succeed(true),
        ).pipe(Effect.provide(layers))
        assert.isDefined(log, "the burst was sent")
        assert.isDefined(atMark, "the wave was marked handed")
        const sent = log!
        assert.strictEqual(sent.copies, sent.sent, "only the old session had the burst")
        const report = Invariants.perGuild(sent.produced, atMark!)
        yield* Effect.logInfo(
          `cluster wave 1 → 2, old reader held: ${sent.sent} events; finished at the mark ${report.consumed}, lost to a kill there ${report.lost}; took ${result.tookMillis} ms`,
        )
        assert.strictEqual(
          report.lost,
          0,
          "events of the old shard's tail lost to a runner killed at the mark",
        )
        assert.deepStrictEqual(Invariants.perGuild(sent.produced, handled).violations, [])
        // The new sessions saved for their singletons; the old one left resumable, its row cleared.
        for (const x of [0, 1])
          assert.isTrue(Option.isSome(yield* store.load([x, 2])), `session ${x}/2 saved`)
        assert.isTrue(Option.isNone(yield* store.load([0, 1])), "the old session's row cleared")
        const old = (yield* gateway.sessions).filter((s) => s.shard[1] === 1)
        assert.deepStrictEqual(
          old.map((s) => s.resumable),
          [true],
          "the old session closed resumable",
        )
      }),
    60_000,
  )
})
