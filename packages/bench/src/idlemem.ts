/**
 * What an idle READY shard keeps, without sockets: a ShardManager of `--shards` shards on a
 * transport in memory (each socket a `FrameBuffer`, answered Hello and READY, then silent),
 * the heap used after all are READY, minus before, ÷ shards (both after a GC). Seconds per
 * run, so a change to what a shard holds can be tried at once; the bench's idle figures
 * (sockets, `ws`, a real generator) stay the measurement.
 *
 *   node --expose-gc --conditions=@vigil/source packages/bench/src/idlemem.ts [--shards N] [--no-metrics] [--heap-snapshot DIR]
 *   (then `heapdiff.ts DIR/idle-before.heapsnapshot DIR/idle-after.heapsnapshot N`)
 */
import * as path from "node:path"
import * as v8 from "node:v8"
import { FrameBuffer, Metrics, SessionStore, ShardManager, Transport } from "@vigil/gateway"
import { Deferred, Effect, Layer, Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const shards = arg("shards", 1000)
const metrics = !process.argv.includes("--no-metrics")
const gc = (globalThis as { gc?: () => void }).gc
if (!gc) {
  console.error("run with --expose-gc")
  process.exit(2)
}
const snapshotAt = process.argv.indexOf("--heap-snapshot")
const snapshotDir = snapshotAt >= 0 ? process.argv[snapshotAt + 1] : undefined
const heapUsed = (name: string) => {
  gc()
  gc()
  if (snapshotDir) v8.writeHeapSnapshot(path.join(snapshotDir, `idle-${name}.heapsnapshot`))
  return process.memoryUsage().heapUsed
}

let identified = 0
const transport = Layer.succeed(Transport.GatewayTransport)({
  connect: () =>
    Effect.sync(() => {
      const inbox = FrameBuffer.make()
      inbox.push(JSON.stringify({ op: 10, d: { heartbeat_interval: 41250 }, s: null, t: null }))
      return {
        receive: inbox.take,
        send: (text: string) =>
          Effect.sync(() => {
            if (!text.startsWith('{"op":2')) return
            const n = ++identified
            inbox.push(
              JSON.stringify({
                op: 0,
                s: 1,
                t: "READY",
                d: {
                  v: 10,
                  session_id: `session-${n}`,
                  resume_gateway_url: "ws://127.0.0.1:1",
                  user: { id: "1", username: "u" },
                  guilds: [],
                },
              }),
            )
          }),
        close: () => Effect.void,
      }
    }),
})

const program = Effect.gen(function* () {
  const allReady = yield* Deferred.make<void>()
  let ready = 0
  const before = heapUsed("before")
  const manager = yield* ShardManager.make({
    token: Redacted.make("idle"),
    intents: 0,
    shardCount: shards,
    gatewayBot: {
      url: "ws://127.0.0.1:1",
      shards,
      session_start_limit: {
        total: 1_000_000,
        remaining: 1_000_000,
        reset_after: 0,
        max_concurrency: shards,
      },
    },
  })
  yield* Effect.forkScoped(
    Stream.runForEach(manager.events, (event) =>
      event.dispatch.type === "READY" && ++ready === shards
        ? Deferred.succeed(allReady, undefined)
        : Effect.void,
    ),
  )
  yield* Deferred.await(allReady)
  yield* Effect.sleep(200)
  const after = heapUsed("after")
  console.log(
    `${shards} idle shards${metrics ? "" : " (metrics off)"}: heap used ${((after - before) / 1024 / shards).toFixed(1)} KiB/shard`,
  )
})

const layer = Layer.mergeAll(
  transport,
  FetchHttpClient.layer,
  SessionStore.SessionStore.layerMemory,
  metrics ? Layer.empty : Layer.succeed(Metrics.Enabled)(false),
)
Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(layer))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  },
)
