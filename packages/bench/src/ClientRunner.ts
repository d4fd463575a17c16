/**
 * One client, one encoding, one mode, alone in this process (forked by main.ts), so that
 * `process.cpuUsage()` and the resident memory are the client's own.
 *
 * - throughput: from READY to the `count`th dispatch after it: events/s and CPU µs/event.
 * - latency: each MESSAGE_CREATE's `nonce` is its send time on the shared monotonic clock;
 *   latency = now - nonce when the consumer receives it.
 *
 * Answers the parent with one `RunResult` over IPC, then exits.
 */
import { clients } from "./Clients.ts"
import type { Encoding } from "./Workload.ts"

export interface RunRequest {
  readonly client: string
  readonly encoding: Encoding
  readonly mode: "throughput" | "latency"
  readonly port: number
  readonly count: number
}

export interface RunResult {
  readonly eventsPerSecond?: number
  readonly cpuMicrosPerEvent?: number
  readonly p50Micros?: number
  readonly p99Micros?: number
  readonly rssMiB: number
  readonly error?: string
}

const request = JSON.parse(process.argv[2] ?? "{}") as RunRequest

const finish = (result: RunResult) => {
  process.send?.(result, () => process.exit(0))
}

const main = async () => {
  const client = clients.find((c) => c.name === request.client)
  if (!client) return finish({ rssMiB: 0, error: `no client ${request.client}` })
  let received = 0
  let startCpu: NodeJS.CpuUsage | undefined
  let startTime = 0n
  const latencies: Array<number> = []
  let done: (result: RunResult) => void = () => {}
  const finished = new Promise<RunResult>((resolve) => {
    done = resolve
  })
  const rss = () => process.memoryUsage().rss / 1024 / 1024

  const onDispatch = (type: string, data: unknown) => {
    if (type === "READY") {
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
