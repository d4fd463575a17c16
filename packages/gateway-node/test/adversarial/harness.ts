/**
 * One adversarial case: a real Shard (ws transport, Node codecs) against a FakeGateway that
 * misbehaves, on real sockets and real clocks, for a bounded time; then the invariants that
 * hold whatever the server does. Each case states only the server and what it asserts beyond.
 */
import { IdentifyThrottle, type Protocol, SessionStore, Shard } from "@vigil/gateway"
import { NodeCompression, NodeTransport } from "@vigil/gateway-node"
import { FakeGateway, Invariants, type Recording } from "@vigil/testing"
import { Cause, Effect, Exit, Fiber, Layer, Redacted, type Scope, Stream, SubscriptionRef } from "effect"

export const token = "adversarial-secret-token-5d1e7"

export interface Case {
  readonly gateway?: Omit<FakeGateway.Config, "token"> | undefined
  readonly shard?: Partial<Omit<Shard.ShardConfig, "token" | "shard" | "gatewayUrl">> | undefined
  /** How long the shard runs against the server. */
  readonly millis: number
  /**
   * What the server does once READY went out (while the shard runs); it must end on its own.
   * The case fails if it fails.
   */
  readonly act?:
    | ((
        gateway: FakeGateway.FakeGatewayService,
        shard: Shard.Shard,
      ) => Effect.Effect<void, unknown, Scope.Scope>)
    | undefined
}

export interface Outcome {
  readonly gateway: FakeGateway.FakeGatewayService
  readonly entries: ReadonlyArray<Recording.Entry>
  /** When the client began each connection attempt (its own clock). */
  readonly attempts: ReadonlyArray<number>
  readonly statuses: ReadonlyArray<Shard.ShardStatus>
  readonly consumed: ReadonlyArray<Protocol.Dispatch>
  /** How `shard.await` ended, if the shard stopped on its own. */
  readonly stopped: Exit.Exit<void, unknown> | undefined
  /** The invariants every case keeps: rate, one socket, nothing left open, no token anywhere. */
  readonly violations: ReadonlyArray<Invariants.Violation>
}

export const run = (c: Case): Effect.Effect<Outcome, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const capture = Invariants.capture()
    const sockets = Invariants.countSockets(NodeTransport.make({ openTimeout: 2_000 }))
    const gateway = yield* FakeGateway.make({
      token,
      heartbeatInterval: 1_000,
      identifyWindow: 50,
      ...c.gateway,
    })
    const statuses: Array<Shard.ShardStatus> = []
    const consumed: Array<Protocol.Dispatch> = []
    const stopped = yield* Effect.scoped(
      Effect.gen(function* () {
        const shard = yield* Shard.make({
          intents: 513,
          helloTimeout: 2_000,
          handshakeTimeout: 2_000,
          ...c.shard,
          token: Redacted.make(token),
          shard: [0, 1],
          gatewayUrl: gateway.url,
        })
        yield* Effect.forkScoped(
          Stream.runForEach(SubscriptionRef.changes(shard.status), (s) =>
            Effect.sync(() => void statuses.push(s)),
          ),
        )
        yield* Effect.forkScoped(
          Stream.runForEach(shard.events, (e) => Effect.sync(() => void consumed.push(e))),
        )
        const awaited = yield* Effect.forkScoped(Effect.exit(shard.await))
        const act = c.act
        const acting = act
          ? yield* Effect.forkScoped(
              Effect.andThen(
                gateway.awaitEntry((e) => e._tag === "Sent" && e.t === "READY"),
                act(gateway, shard),
              ),
            )
          : undefined
        yield* Effect.sleep(c.millis)
        // What the act asserted counts: it is bounded, so wait for it to end.
        if (acting) yield* Fiber.join(acting)
        return awaited.pollUnsafe() === undefined ? undefined : yield* Fiber.join(awaited)
      }),
    ).pipe(
      Effect.provide(
        Layer.mergeAll(
          sockets.layer,
          NodeCompression.layer,
          SessionStore.SessionStore.layerMemory,
          // Short identify windows: the client's own throttle must not hide a storm.
          IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1, windowMillis: 50 }),
          capture.layer,
        ),
      ),
    )
    const seen = [...capture.texts(), ...statuses.map(Invariants.text)]
    if (stopped !== undefined && Exit.isFailure(stopped)) seen.push(Cause.pretty(stopped.cause))
    return {
      gateway,
      entries: yield* gateway.entries,
      attempts: sockets.attempts(),
      statuses,
      consumed,
      stopped,
      violations: [
        ...Invariants.connectionRate(sockets.attempts(), { graceMillis: 1_000 }),
        ...Invariants.atMostOpen(sockets.max(), 1),
        ...Invariants.nothingOpen(sockets.open()),
        ...Invariants.secretNeverLeaked(token, seen),
      ],
    }
  })
