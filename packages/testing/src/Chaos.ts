/**
 * Chaos runs: a generated schedule of traffic and faults played against a Shard over the
 * in-memory transport, with `TestClock` deciding every instant, then every invariant
 * checked. Deterministic: the same schedule always replays the same run, so a failing one
 * printed by fast-check becomes a regular test by pasting it into `run`.
 */
import { IdentifyThrottle, SessionStore, Shard } from "@vigil/gateway"
import { sendLimit } from "@vigil/gateway/Protocol"
import { MemoryTransport } from "@vigil/gateway/testing/MemoryTransport"
import * as ScriptedGateway from "@vigil/gateway/testing/ScriptedGateway"
import { advance, settle } from "@vigil/gateway/testing/Settle"
import { Effect, Layer, Random, Redacted, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as Invariants from "./Invariants.ts"

export type Step =
  | { readonly kind: "emit"; readonly count: number }
  | { readonly kind: "advance"; readonly millis: number }
  | { readonly kind: "acks"; readonly on: boolean }
  | { readonly kind: "drop" }
  | { readonly kind: "reconnect" }
  | { readonly kind: "invalidSession"; readonly resumable: boolean }
  | { readonly kind: "close"; readonly code: number }
  | { readonly kind: "requestHeartbeat" }
  | { readonly kind: "connectFails"; readonly times: number }
  | { readonly kind: "rejectResumes"; readonly on: boolean }
  | { readonly kind: "command" }
  // A hostile server (issue 15): see `hostileStep`.
  | { readonly kind: "endAfterHandshake"; readonly ending: ScriptedGateway.HandshakeEnding | undefined }
  | { readonly kind: "ignoreHandshakes"; readonly on: boolean }
  | { readonly kind: "flood"; readonly op: 1 | 7; readonly count: number }
  | { readonly kind: "heartbeatInterval"; readonly millis: number }

const token = "chaos-secret-token-7f3a9c"
const interval = 41_250

/** Close codes a healthy bot can meet (fatal ones end the shard and are tested on their own). */
export const survivableCloseCodes = [
  1000, 1001, 4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009, 4900,
] as const

export const step: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({ kind: fc.constant("emit" as const), count: fc.integer({ min: 1, max: 20 }) }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("advance" as const),
      millis: fc.integer({ min: 0, max: 120_000 }),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant("acks" as const), on: fc.boolean() }), weight: 2 },
  { arbitrary: fc.constant({ kind: "drop" as const }), weight: 1 },
  { arbitrary: fc.constant({ kind: "reconnect" as const }), weight: 1 },
  {
    arbitrary: fc.record({ kind: fc.constant("invalidSession" as const), resumable: fc.boolean() }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("close" as const),
      code: fc.constantFrom(...survivableCloseCodes),
    }),
    weight: 2,
  },
  { arbitrary: fc.constant({ kind: "requestHeartbeat" as const }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant("connectFails" as const),
      times: fc.integer({ min: 1, max: 4 }),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant("rejectResumes" as const), on: fc.boolean() }), weight: 1 },
  { arbitrary: fc.constant({ kind: "command" as const }), weight: 2 },
)

export const schedule: fc.Arbitrary<ReadonlyArray<Step>> = fc.array(step, { minLength: 1, maxLength: 25 })

/** What a hostile server does (issue 15): ends every connection after the handshake, never answers it, storms, a tiny interval. */
export const hostileStep: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("endAfterHandshake" as const),
      ending: fc.oneof(
        fc.constant(undefined),
        fc.constant("reconnect" as const),
        fc.constant("malformed" as const),
        fc.record({ close: fc.constantFrom(1006, 3000, 4999, ...survivableCloseCodes) }),
      ),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant("ignoreHandshakes" as const), on: fc.boolean() }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant("flood" as const),
      op: fc.constantFrom(1 as const, 7 as const),
      count: fc.integer({ min: 2, max: 500 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("heartbeatInterval" as const),
      millis: fc.constantFrom(1, 10, 250, interval),
    }),
    weight: 1,
  },
)

/** The regular steps and the hostile ones, mixed. */
export const hostileSchedule: fc.Arbitrary<ReadonlyArray<Step>> = fc.array(
  fc.oneof({ arbitrary: step, weight: 3 }, { arbitrary: hostileStep, weight: 1 }),
  { minLength: 1, maxLength: 25 },
)

const play = (steps: ReadonlyArray<Step>) =>
  Effect.gen(function* () {
    const server = yield* ScriptedGateway.ScriptedGateway
    const memory = yield* MemoryTransport
    const consumed: Array<import("@vigil/gateway").Protocol.Dispatch> = []
    let commands = 0
    const violations = yield* Effect.scoped(
      Effect.gen(function* () {
        const shard = yield* Shard.make({
          token: Redacted.make(token),
          intents: 1,
          shard: [0, 1],
          gatewayUrl: "memory://gateway",
        })
        yield* Effect.forkScoped(
          Stream.runForEach(shard.events, (e) => Effect.sync(() => void consumed.push(e))),
        )
        yield* settle
        for (const s of steps) {
          switch (s.kind) {
            case "emit":
              yield* server.emitMessages(s.count)
              break
            case "advance":
              yield* advance(s.millis)
              break
            case "acks":
              yield* s.on ? server.resumeAcks() : server.stopAcks()
              break
            case "drop":
              yield* server.drop()
              break
            case "reconnect":
              yield* server.reconnect()
              break
            case "invalidSession":
              yield* server.invalidSession(s.resumable)
              break
            case "close":
              yield* server.close(s.code)
              break
            case "requestHeartbeat":
              yield* server.requestHeartbeat()
              break
            case "connectFails":
              for (let i = 0; i < s.times; i++) yield* memory.failNextConnect("chaos: network down")
              break
            case "rejectResumes":
              yield* server.rejectResumes(s.on ? 4000 : undefined)
              break
            case "endAfterHandshake":
              yield* server.endAfterHandshake(s.ending)
              break
            case "ignoreHandshakes":
              yield* server.ignoreHandshakes(s.on)
              break
            case "flood":
              yield* server.flood(s.op, s.count)
              break
            case "heartbeatInterval":
              yield* server.setHeartbeatInterval(s.millis)
              break
            case "command":
              commands++
              yield* Effect.forkScoped(
                shard.send(3, { since: null, activities: [], status: "online", afk: false }),
              )
              break
          }
          yield* settle
        }
        // Heal the world and give the shard time to recover: everything must arrive.
        yield* server.resumeAcks()
        yield* server.rejectResumes(undefined)
        yield* server.endAfterHandshake(undefined)
        yield* server.ignoreHandshakes(false)
        yield* server.setHeartbeatInterval(interval)
        for (let i = 0; i < 20; i++) yield* advance(30_000)
        const health = yield* shard.health
        return [
          ...Invariants.exactlyOnce(server.produced(), consumed, { settled: true }),
          ...(health.state._tag === "Ready"
            ? []
            : [{ invariant: "recovers", detail: `shard is ${health.state._tag} after healing` }]),
          ...(server.commands().length === commands
            ? []
            : [
                {
                  invariant: "commands-once",
                  detail: `${commands} sent, server saw ${server.commands().length}`,
                },
              ]),
        ]
      }),
    )
    yield* settle
    return [
      ...violations,
      ...Invariants.noLateSends(memory.peers()),
      ...Invariants.atMostOpen(memory.maxOpenCount(), 1),
      ...Invariants.nothingOpen(memory.openCount()),
      ...Invariants.connectionRate(memory.connectAttempts()),
      ...memory.peers().flatMap((p) =>
        Invariants.sendRate(
          p.id,
          p.sent.map((f) => f.at),
          { frames: sendLimit.commands, windowMillis: sendLimit.windowMillis },
        ),
      ),
    ]
  })

/** Plays one schedule from scratch (fresh server, store, clock) and returns every violation. */
export const run = (
  steps: ReadonlyArray<Step>,
  seed = "chaos",
): Promise<ReadonlyArray<Invariants.Violation>> => {
  const capture = Invariants.capture()
  const env = Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: interval }),
    SessionStore.SessionStore.layerMemory,
    IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
    capture.layer,
  ).pipe(Layer.provideMerge(TestClock.layer()))
  return Effect.runPromise(
    play(steps).pipe(
      Effect.map((violations) => [
        ...violations,
        ...Invariants.secretNeverLeaked(token, capture.texts()),
        ...capture.errors().map((detail) => ({ invariant: "no-unexpected-error", detail })),
      ]),
      Effect.provide(env),
      Random.withSeed(seed),
    ),
  )
}
