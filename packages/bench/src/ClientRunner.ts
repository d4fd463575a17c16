/**
 * One client, one encoding, one mode, alone in this process (forked by main.ts), so that
 * `process.cpuUsage()` and the resident memory are the client's own.
 *
 * - throughput: from READY to the `count`th dispatch after it: events/s and CPU µs/event.
 * - latency: each MESSAGE_CREATE's `nonce` is its send time on the shared monotonic clock;
 *   latency = now - nonce when the consumer receives it.
 *
 * - idle: `shards` shards in this one process against `/idle/<interval>`; once all are READY
 *   and settled, the resident memory (and V8 heap) they added over the baseline taken
 *   before the first connect (after a GC when `--expose-gc` is on); then, over
 *   `windowSeconds` of idleness, the process's CPU time and the heartbeats the generator
 *   counted in that window.
 * - zombie: one shard against `/zombie/<interval>`; the loopback round trip first (median
 *   of ws pings); then, per trial, from the generator's stamps (shared monotonic clock) to
 *   the moment the consumer sees RESUMED.
 *
 * Answers the parent with one `RunResult` over IPC, then exits.
 */
import * as fs from "node:fs"
import { Session } from "node:inspector"
import * as v8 from "node:v8"
import WebSocket from "ws"
import { type BenchClient, clients } from "./Clients.ts"
import type { Encoding } from "./Workload.ts"

export interface RunRequest {
  readonly client: string
  readonly encoding: Encoding
  readonly mode: "throughput" | "latency" | "idle" | "zombie"
  readonly port: number
  /** throughput/latency: dispatches; idle: shards; zombie: trials. */
  readonly count: number
  /** idle/zombie: the heartbeat interval the generator announces, ms. */
  readonly intervalMillis?: number
  /** idle: seconds of idleness over which CPU is measured. */
  readonly windowSeconds?: number
  /** A file for a V8 CPU profile of the measured window only (READY → last event; idle window). */
  readonly profile?: string
  /** idle: heap snapshots at the baseline and once all are READY, `<prefix>-before/after.heapsnapshot`. */
  readonly heapSnapshot?: string
}

export interface IdleResult {
  readonly shards: number
  readonly intervalMillis: number
  readonly readySeconds: number
  readonly rssDeltaMiB: number
  readonly heapDeltaMiB: number
  /** V8's committed heap (used and free space): what the heap costs in RSS. */
  readonly heapTotalDeltaMiB: number
  /** Memory outside V8's heap that V8 knows of (Buffers, ArrayBuffers). */
  readonly externalDeltaMiB: number
  readonly windowSeconds: number
  readonly cpuMicros: number
  readonly heartbeats: number
}

export interface ZombieTrial {
  /** From the first unanswered heartbeat's arrival at the server to RESUMED at the consumer. */
  readonly fromUnansweredMillis: number
  /** From the last ACK the server sent to RESUMED at the consumer. */
  readonly fromLastAckMillis: number
}

export interface ZombieResult {
  readonly intervalMillis: number
  readonly rttMillis: number
  readonly trials: ReadonlyArray<ZombieTrial>
}

export interface RunResult {
  readonly eventsPerSecond?: number
  readonly cpuMicrosPerEvent?: number
  readonly p50Micros?: number
  readonly p99Micros?: number
  readonly rssMiB: number
  readonly idle?: IdleResult
  readonly zombie?: ZombieResult
  readonly error?: string
}

const request = JSON.parse(process.argv[2] ?? "{}") as RunRequest

/** A CPU profile over the measured window, when asked for (`main.ts --cpu-prof DIR`). */
const session = request.profile === undefined ? undefined : new Session()
const post = (method: string) =>
  new Promise<unknown>((resolve, reject) =>
    session?.post(method, (error, result) => (error ? reject(error) : resolve(result))),
  )
const startProfile = () => {
  if (!session) return
  session.connect()
  void post("Profiler.enable").then(() => post("Profiler.start"))
}
const stopProfile = async () => {
  if (!session || request.profile === undefined) return
  const { profile } = (await post("Profiler.stop")) as { profile: unknown }
  fs.writeFileSync(request.profile, JSON.stringify(profile))
  session.disconnect()
}

const finish = (result: RunResult) => {
  void stopProfile()
    .catch((error: unknown) => console.error(`profile: ${String(error)}`))
    .then(() => process.send?.(result, () => process.exit(0)))
}

const rss = () => process.memoryUsage().rss / 1024 / 1024
const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))
const gc = () => (globalThis as { gc?: () => void }).gc?.()

/** Fails after `millis` unless `promise` settles first. */
const within = <A>(promise: Promise<A>, millis: number, what: () => string) =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(what())), millis).unref()),
  ])

const idle = async (client: BenchClient): Promise<RunResult> => {
  if (!client.startMany) return { rssMiB: rss(), error: "no many-shard mode" }
  const shards = request.count
  const intervalMillis = request.intervalMillis ?? 41_250
  const windowSeconds = request.windowSeconds ?? 10
  const base = `http://127.0.0.1:${request.port}`
  const stats = async () =>
    ((await (await fetch(`${base}/stats`)).json()) as { idleHeartbeats: number }).idleHeartbeats
  await stats() // the fetch machinery loaded before the baseline, not counted as shards
  gc()
  await sleep(300)
  // With a profile asked for: the sampling heap profiler over the connect, stopped once all
  // are READY and settled, keeps what is still live (what the shards hold), by allocation site.
  if (session) {
    session.connect()
    await post("HeapProfiler.enable")
    await post("HeapProfiler.startSampling")
  }
  if (request.heapSnapshot !== undefined) {
    v8.writeHeapSnapshot(`${request.heapSnapshot}-before.heapsnapshot`)
    gc()
  }
  const m0 = process.memoryUsage()
  const rss0 = m0.rss
  const heap0 = m0.heapUsed
  const started = performance.now()
  let ready = 0
  let allReady: () => void = () => {}
  const readyPromise = new Promise<void>((resolve) => {
    allReady = resolve
  })
  const handle = await client.startMany({
    url: `ws://127.0.0.1:${request.port}/idle/${intervalMillis}`,
    token: "bench-token",
    count: shards,
    maxConcurrency: shards,
    onReady: () => {
      if (++ready === shards) allReady()
    },
  })
  try {
    await within(readyPromise, 90_000, () => `only ${ready} of ${shards} shards READY`)
    const readySeconds = (performance.now() - started) / 1000
    await sleep(2_000)
    gc()
    await sleep(300)
    const m1 = process.memoryUsage()
    const rss1 = m1.rss
    const heap1 = m1.heapUsed
    if (request.heapSnapshot !== undefined) v8.writeHeapSnapshot(`${request.heapSnapshot}-after.heapsnapshot`)
    if (session && request.profile !== undefined) {
      const { profile } = (await post("HeapProfiler.stopSampling")) as { profile: unknown }
      fs.writeFileSync(request.profile.replace(/\.cpuprofile$/, ".heapprofile"), JSON.stringify(profile))
      session.disconnect()
    }
    const beats0 = await stats()
    startProfile()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await sleep(windowSeconds * 1000)
    const cpu = process.cpuUsage(cpu0)
    const measured = (performance.now() - t0) / 1000
    const beats1 = await stats()
    return {
      rssMiB: rss(),
      idle: {
        shards,
        intervalMillis,
        readySeconds,
        rssDeltaMiB: (rss1 - rss0) / 2 ** 20,
        heapDeltaMiB: (heap1 - heap0) / 2 ** 20,
        heapTotalDeltaMiB: (m1.heapTotal - m0.heapTotal) / 2 ** 20,
        externalDeltaMiB: (m1.external - m0.external) / 2 ** 20,
        windowSeconds: measured,
        cpuMicros: cpu.user + cpu.system,
        heartbeats: beats1 - beats0,
      },
    }
  } finally {
    await handle.close()
  }
}

/** The loopback round trip: the median of 20 ws pings to the generator. */
const roundTrip = async (): Promise<number> => {
  const socket = new WebSocket(`ws://127.0.0.1:${request.port}/idle/600000`, { perMessageDeflate: false })
  await new Promise((resolve) => socket.once("open", resolve))
  const samples: Array<number> = []
  for (let i = 0; i < 20; i++) {
    const sent = process.hrtime.bigint()
    await new Promise<void>((resolve) => {
      socket.once("pong", () => resolve())
      socket.ping()
    })
    samples.push(Number(process.hrtime.bigint() - sent) / 1e6)
  }
  socket.terminate()
  samples.sort((a, b) => a - b)
  return samples[samples.length >> 1] ?? 0
}

const zombie = async (client: BenchClient): Promise<RunResult> => {
  if (!client.heartbeats) return { rssMiB: rss(), error: "no heartbeat" }
  const intervalMillis = request.intervalMillis ?? 1_000
  const rttMillis = await roundTrip()
  const trials: Array<ZombieTrial> = []
  let resumedAt: bigint | undefined
  let done: () => void = () => {}
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  const handle = await client.start({
    url: `ws://127.0.0.1:${request.port}/zombie/${intervalMillis}`,
    encoding: "json",
    token: "bench-token",
    onDispatch: (type, data) => {
      if (type === "RESUMED") resumedAt = process.hrtime.bigint()
      if (type !== "BENCH_ZOMBIE" || resumedAt === undefined) return
      const stamps = data as { lastAckAt: string; unansweredAt: string | null }
      const millis = (from: string) => Number((resumedAt as bigint) - BigInt(from)) / 1e6
      trials.push({
        fromUnansweredMillis: stamps.unansweredAt === null ? Number.NaN : millis(stamps.unansweredAt),
        fromLastAckMillis: millis(stamps.lastAckAt),
      })
      if (trials.length === request.count) done()
    },
  })
  try {
    await within(finished, 20 * intervalMillis * request.count + 10_000, () => `${trials.length} resumes`)
    return { rssMiB: rss(), zombie: { intervalMillis, rttMillis, trials } }
  } finally {
    await handle.close()
  }
}

const main = async () => {
  const client = clients.find((c) => c.name === request.client)
  if (!client) return finish({ rssMiB: 0, error: `no client ${request.client}` })
  if (request.mode === "idle") return finish(await idle(client))
  if (request.mode === "zombie") return finish(await zombie(client))
  let received = 0
  let startCpu: NodeJS.CpuUsage | undefined
  let startTime = 0n
  const latencies: Array<number> = []
  let done: (result: RunResult) => void = () => {}
  const finished = new Promise<RunResult>((resolve) => {
    done = resolve
  })

  const onDispatch = (type: string, data: unknown) => {
    if (type === "READY") {
      startProfile()
      startCpu = process.cpuUsage()
      startTime = process.hrtime.bigint()
      return
    }
    received++
    if (request.mode === "latency") {
      const nonce = (data as { nonce?: string }).nonce
      if (nonce !== undefined) latencies.push(Number(process.hrtime.bigint() - BigInt(nonce)) / 1000)
      if (received === request.count) {
        latencies.sort((a, b) => a - b)
        const at = (q: number) =>
          latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0
        done({ p50Micros: at(0.5), p99Micros: at(0.99), rssMiB: rss() })
      }
    } else if (received === request.count) {
      const cpu = process.cpuUsage(startCpu)
      const seconds = Number(process.hrtime.bigint() - startTime) / 1e9
      done({
        eventsPerSecond: received / seconds,
        cpuMicrosPerEvent: (cpu.user + cpu.system) / received,
        rssMiB: rss(),
      })
    }
  }

  const handle = await client.start({
    url: `ws://127.0.0.1:${request.port}/${request.mode}`,
    encoding: request.encoding,
    token: "bench-token",
    onDispatch,
  })
  const result = await Promise.race([
    finished,
    new Promise<RunResult>((resolve) =>
      setTimeout(
        () => resolve({ rssMiB: rss(), error: `timed out after ${received} events` }),
        60_000,
      ).unref(),
    ),
  ])
  await handle.close()
  finish(result)
}

main().catch((error: unknown) => finish({ rssMiB: 0, error: String(error) }))
