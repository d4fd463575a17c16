/**
 * The core alone: how much Connection and Shard cost per event. Frames are pushed straight
 * into the in-memory transport and consumed from `shard.events`; no sockets, no codecs.
 *
 *   node packages/bench/src/hotpath.ts [EVENTS]   (default 200 000)
 */
import { IdentifyThrottle, SessionStore, Shard } from "@vigil/gateway"
import { MemoryTransport } from "@vigil/testing"
import { Effect, Fiber, Layer, Redacted, Stream } from "effect"

const N = Number(process.argv[2] ?? 200_000)
const frames = Array.from({ length: N }, (_, i) =>
  JSON.stringify({
    op: 0,
    s: i + 2,
    t: "MESSAGE_CREATE",
    d: { id: String(i), channel_id: "1", content: "hello world", author: { id: "2", username: "x" } },
  }),
)

const program = Effect.gen(function* () {
  const gateway = yield* MemoryTransport.MemoryTransport
  const shard = yield* Shard.make({
    token: Redacted.make("t"),
    intents: 1,
    shard: [0, 1],
    gatewayUrl: "memory://x",
  })
  const peer = yield* gateway.accept
  yield* peer.send({ op: 10, d: { heartbeat_interval: 41250 }, s: null, t: null })
  let count = 0
  const consumer = yield* Effect.forkChild(
    Stream.runForEach(Stream.take(shard.events, N + 1), () => Effect.sync(() => void count++)),
  )
  yield* Effect.sleep(10)
  yield* peer.send({
    op: 0,
    s: 1,
    t: "READY",
    d: {
      v: 10,
      session_id: "s",
      resume_gateway_url: "memory://r",
      user: { id: "1", username: "u" },
      guilds: [],
    },
  })
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < N; i += 100) {
    for (let j = i; j < Math.min(N, i + 100); j++) yield* peer.sendRaw(frames[j]!)
    yield* Effect.yieldNow
  }
  yield* Fiber.join(consumer)
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  console.log(
    `${N} events in ${ms.toFixed(0)} ms: ${((N / ms) * 1000).toFixed(0)} ev/s, ${((cpu.user + cpu.system) / N).toFixed(2)} µs CPU/event, delivered ${count}`,
  )
})

Effect.runPromise(
  Effect.scoped(program).pipe(
    Effect.provide(
      Layer.mergeAll(
        MemoryTransport.MemoryTransport.layer,
        SessionStore.SessionStore.layerMemory,
        IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
      ),
    ),
  ),
)
