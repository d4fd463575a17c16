/**
 * The core alone: how much Connection, Shard (or ShardManager) and the consumer cost per
 * event, without sockets or codecs. A transport in memory hands the reader reads of
 * `--batch` frames each (as `ws` emits a TCP read's messages), as fast as it asks.
 *
 *   node packages/bench/src/hotpath.ts [--events N] [--batch N] [--manager] [--no-metrics] [--cpu-prof]
 */
import { IdentifyThrottle, Metrics, SessionStore, Shard, ShardManager, Transport } from "@vigil/gateway"
import { Effect, Layer, Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const N = arg("events", 400_000)
const batch = arg("batch", 32)
const manager = process.argv.includes("--manager")
const metrics = !process.argv.includes("--no-metrics")

const frames = Array.from({ length: N }, (_, i) =>
  JSON.stringify({
    op: 0,
    s: i + 2,
    t: i % 3 === 0 ? "MESSAGE_CREATE" : i % 3 === 1 ? "PRESENCE_UPDATE" : "TYPING_START",
    d: { id: String(i), channel_id: "1", content: "hello world", author: { id: "2", username: "x" } },
  }),
)
const hello = JSON.stringify({ op: 10, d: { heartbeat_interval: 41250 }, s: null, t: null })
const ready = JSON.stringify({
  op: 0,
  s: 1,
  t: "READY",
  d: { v: 10, session_id: "s", resume_gateway_url: "ws://r", user: { id: "1", username: "u" }, guilds: [] },
})

let startedAt = 0
let cpu0 = process.cpuUsage()
const transport = Layer.succeed(Transport.GatewayTransport)({
  connect: () =>
    Effect.sync(() => {
      let next = -2
      return {
        receive: Effect.suspend(() => {
          if (next === -2) {
            next++
            return Effect.succeed([hello])
          }
          if (next === -1) {
            next++
            startedAt = performance.now()
            cpu0 = process.cpuUsage()
            return Effect.succeed([ready])
          }
          if (next >= N) return Effect.never
          const read = frames.slice(next, next + batch)
          next += batch
          return Effect.andThen(Effect.yieldNow, Effect.succeed(read))
        }),
        send: () => Effect.void,
        close: () => Effect.void,
      }
    }),
})

const consume = <A>(events: Stream.Stream<A>) =>
  Effect.gen(function* () {
    let count = 0
    yield* Stream.runForEach(Stream.take(events, N + 1), () =>
      Effect.sync(() => {
        count++
      }),
    )
    const ms = performance.now() - startedAt
    const cpu = process.cpuUsage(cpu0)
    console.log(
      `${manager ? "ShardManager" : "Shard"}${metrics ? "" : " (metrics off)"}, reads of ${batch}: ` +
        `${count} events in ${ms.toFixed(0)} ms, ${((count / ms) * 1000).toFixed(0)} events/s, ` +
        `${((cpu.user + cpu.system) / count).toFixed(2)} µs CPU/event`,
    )
  })

const config = { token: Redacted.make("t"), intents: 1, gatewayUrl: "ws://x" } as const
const layer = Layer.mergeAll(
  transport,
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
  FetchHttpClient.layer,
  Layer.succeed(Metrics.Enabled)(metrics),
)
const run = <E, R>(program: Effect.Effect<void, E, R>) =>
  Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(layer)) as Effect.Effect<void, E>)

void (manager
  ? run(
      Effect.flatMap(
        ShardManager.make({
          ...config,
          shardCount: 1,
          gatewayBot: {
            url: "ws://x",
            shards: 1,
            session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 },
          },
        }),
        (m) => consume(m.events),
      ),
    )
  : run(Effect.flatMap(Shard.make({ ...config, shard: [0, 1] }), (s) => consume(s.events))))
