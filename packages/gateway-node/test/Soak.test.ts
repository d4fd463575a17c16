/**
 * A real-socket soak: a Shard on the ws transport talks to FakeGateway through a TCP proxy
 * that keeps flapping (cut, stall, slow, refuse) while traffic flows and the server turns
 * hostile now and then (op 1 and op 7 storms, a close frame whose TCP close lingers), and
 * commands are sent. Bounded in time: a few seconds in CI, as long as you like with
 * `SOAK_SECONDS=600`. The same invariants as the in-memory chaos runs must hold when it ends.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, type Protocol, SessionStore, Shard } from "@vigil/gateway"
import { NodeTransport } from "@vigil/gateway-node"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Invariants from "@vigil/testing/Invariants"
import * as Recording from "@vigil/testing/Recording"
import * as TcpProxy from "@vigil/testing/TcpProxy"
import { Effect, type Fiber, Layer, Random, Redacted, Stream, SubscriptionRef } from "effect"

const seconds = Number(process.env["SOAK_SECONDS"] ?? 6)
const token = "soak-secret-token"
const interval = 300
const presence = { since: null, activities: [], status: "online", afk: false }

const sockets = Invariants.countSockets(NodeTransport.make({ openTimeout: 2_000 }))
const env = Layer.mergeAll(
  sockets.layer,
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1, windowMillis: 200 }),
)

describe("soak over real sockets through a flapping proxy", () => {
  it.live(
    `${seconds} s of faults and traffic keep every invariant`,
    () =>
      Effect.gen(function* () {
        const capture = Invariants.capture()
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: interval, identifyWindow: 200 })
        const proxy = yield* TcpProxy.make({ target: { port: gateway.port } })
        // READY hands out the proxy as the resume URL, so resumes go through the faults too.
        yield* gateway.advertise(proxy.url)
        const consumed: Array<Protocol.Dispatch> = []
        const statuses: Array<Shard.ShardStatus> = []
        const commands: Array<{ label: string; fiber: Fiber.Fiber<void, unknown> }> = []
        const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length
        const timersBefore = timers()
        const result = yield* Effect.scoped(
          Effect.gen(function* () {
            const shard = yield* Shard.make({
              token: Redacted.make(token),
              intents: 513,
              shard: [0, 1],
              gatewayUrl: proxy.url,
              helloTimeout: 2_000,
              handshakeTimeout: 3_000,
              policy: { backoffBaseMillis: 50, backoffMaxMillis: 500 },
            })
            yield* Effect.forkScoped(
              Stream.runForEach(shard.events, (e) => Effect.sync(() => void consumed.push(e))),
            )
            yield* Effect.forkScoped(
              Stream.runForEach(SubscriptionRef.changes(shard.status), (s) =>
                Effect.sync(() => void statuses.push(s)),
              ),
            )
            const end = Date.now() + seconds * 1000
            let faults = 0
            while (Date.now() < end) {
              yield* gateway.emit({ shard: 0 }, { count: 20 }).pipe(Effect.ignore)
              const roll = yield* Random.nextIntBetween(0, 14)
              if (roll === 0) yield* proxy.cut
              else if (roll === 1) yield* Effect.andThen(proxy.stall, Effect.sleep(interval * 3))
              else if (roll === 2) yield* proxy.slow({ latency: 40 })
              else if (roll === 3) yield* Effect.andThen(proxy.refuse(true), Effect.sleep(150))
              else if (roll === 4) yield* gateway.reconnect({ shard: 0 }).pipe(Effect.ignore)
              else if (roll === 5) yield* gateway.drop({ shard: 0 }).pipe(Effect.ignore)
              else if (roll === 6) yield* gateway.flood({ shard: 0 }, 7, 50).pipe(Effect.ignore)
              else if (roll === 7) yield* gateway.flood({ shard: 0 }, 1, 20).pipe(Effect.ignore)
              else if (roll === 8)
                yield* gateway.close({ shard: 0 }, 4000, { linger: interval * 2 }).pipe(Effect.ignore)
              else if (roll === 9) {
                const fiber = yield* Effect.forkScoped(shard.send(3, presence))
                commands.push({ label: `command ${commands.length + 1}`, fiber })
              }
              if (roll <= 8) faults++
              yield* Effect.sleep(100)
              yield* proxy.resume
              yield* proxy.refuse(false)
            }
            // Heal and let the shard catch up, then compare what the server produced.
            yield* proxy.resume
            yield* proxy.refuse(false)
            for (let i = 0; i < 500; i++) {
              const status = yield* shard.health
              const sessions = yield* gateway.sessions
              const newest = sessions.filter((s) => s.shard[0] === 0).at(-1)
              const last = consumed.at(-1)
              if (status.state._tag === "Ready" && newest && last && last.seq === newest.seq) break
              yield* Effect.sleep(20)
            }
            // Every command settles while the shard still runs (sent once it is ready).
            const unsettled = yield* Invariants.commandsSettle(commands, 5_000)
            return { faults, unsettled, sessions: yield* gateway.sessions }
          }),
        ).pipe(Effect.provide(capture.layer))

        // Every session's events arrived as a gap-free prefix 1..n; the newest one completely.
        const violations: Array<Invariants.Violation> = []
        const bySession = new Map<string, Array<number>>()
        let current: Array<number> | undefined
        for (const e of consumed) {
          if (e.type === "READY") {
            current = []
            bySession.set((e.data as { session_id: string }).session_id, current)
          }
          current?.push(e.seq)
        }
        for (const [id, seqs] of bySession) {
          if (seqs.some((s, i) => s !== i + 1)) {
            violations.push({
              invariant: "exactly-once",
              detail: `session ${id}: ${seqs.slice(0, 50).join(",")}`,
            })
          }
        }
        const newest = result.sessions.at(-1)!
        const got = bySession.get(newest.id) ?? []
        if (got.length !== newest.seq) {
          violations.push({
            invariant: "exactly-once",
            detail: `newest session: ${got.length} of ${newest.seq}`,
          })
        }
        // The server learns of the last close through the proxy a moment later.
        for (let i = 0; i < 200 && (yield* gateway.openSockets) > 0; i++) yield* Effect.sleep(10)
        // No fiber of the client is left sleeping: its timers are gone with its scope.
        for (let i = 0; i < 100 && timers() > timersBefore + 1; i++) yield* Effect.sleep(10)
        if (timers() > timersBefore + 1) {
          violations.push({ invariant: "clean-shutdown", detail: `${timers() - timersBefore} timer(s) left` })
        }
        // The server counted at most 120 frames a minute on each connection.
        const received = Recording.received(yield* gateway.entries)
        for (const id of new Set(received.map((r) => r.connection))) {
          violations.push(
            ...Invariants.sendRate(
              id,
              received.filter((r) => r.connection === id).map((r) => r.at),
              { frames: 120, windowMillis: 60_000 },
            ),
          )
        }
        violations.push(
          ...result.unsettled,
          ...Invariants.connectionRate(sockets.attempts(), { graceMillis: 1_000 }),
          ...Invariants.atMostOpen(sockets.max(), 1),
          ...Invariants.nothingOpen(sockets.open()),
          ...Invariants.nothingOpen(yield* gateway.openSockets),
          ...Invariants.secretNeverLeaked(token, [...capture.texts(), ...statuses.map(Invariants.text)]),
        )
        assert.deepStrictEqual(violations, [])
        assert.isAbove(result.faults, 0)
        assert.isAbove(consumed.length, 20)
      }).pipe(Effect.provide(env)),
    (seconds + 60) * 1000,
  )
})
