/**
 * The bench, in one command:
 *
 *   node packages/bench/src/main.ts [--count N] [--latency-events N] [--latency-rate N]
 *     [--shards N] [--idle-window S] [--beat-interval MS] [--zombie-interval MS]
 *     [--zombie-trials N] [--repeat N] [--only throughput,idle,zombie] [--clients floor,vigil]
 *     [--cpu-prof DIR] [--heap-snapshot DIR] [--no-write]
 *
 * Forks the load generator (Generator.ts), then one fresh client process (ClientRunner.ts)
 * per measurement, one at a time so they do not share the CPU:
 * - throughput (`--repeat` rounds of every client in turn, the median by events/s is kept:
 *   the machine is shared) and latency, for every encoding and every client that supports it;
 * - idle: `--shards` shards in one process, twice per client: at Discord's 41.25 s
 *   heartbeat interval (resident memory, and CPU measured directly), and at a short
 *   `--beat-interval` (CPU per heartbeat, scaled to a 41.25 s interval);
 * - zombie: the server stops ACKing; time to RESUMED, `--zombie-trials` times.
 * Writes the tables and the charts (SVG, `charts/`) to packages/bench/README.md between
 * the `bench:results` markers, with the machine's details.
 */
import { fork } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import { barChart, type Group } from "./Chart.ts"
import type { IdleResult, RunRequest, RunResult, ZombieResult } from "./ClientRunner.ts"
import { clients as allClients } from "./Clients.ts"
import { encodings } from "./Workload.ts"

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const list = (name: string) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? (process.argv[at + 1] ?? "").split(",") : undefined
}
const count = arg("count", 40_000)
const latencyEvents = arg("latency-events", 3_000)
const latencyRate = arg("latency-rate", 1_000)
const shards = arg("shards", 1_000)
const idleWindow = arg("idle-window", 8)
const beatInterval = arg("beat-interval", 1_000)
const zombieInterval = arg("zombie-interval", 1_000)
const zombieTrials = arg("zombie-trials", 5)
const repeat = arg("repeat", 3)
const discordInterval = 41_250
const only = new Set(list("only") ?? ["throughput", "idle", "zombie"])
const chosen = list("clients")
const clients = chosen ? allClients.filter((c) => chosen.includes(c.name)) : allClients
const write = !process.argv.includes("--no-write")
/**
 * `--cpu-prof DIR`: every client process writes a V8 CPU profile of its measured window there
 * (read with profile.ts). Profiling costs CPU: figures from such a run are not the table's.
 */
const profileDir = list("cpu-prof")?.[0]
if (profileDir !== undefined) fs.mkdirSync(profileDir, { recursive: true })
/** `--heap-snapshot DIR`: idle runs at Discord's interval write heap snapshots there (read with heapdiff.ts). */
const snapshotDir = list("heap-snapshot")?.[0]
if (snapshotDir !== undefined) fs.mkdirSync(snapshotDir, { recursive: true })
const here = new URL(".", import.meta.url)

const runChild = <A>(
  script: string,
  argument: unknown,
  onFirstMessage: (message: A, child: ReturnType<typeof fork>) => void,
  execArgv: ReadonlyArray<string> = [],
) => {
  const child = fork(new URL(script, here), [JSON.stringify(argument)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [...process.execArgv, ...execArgv],
  })
  child.once("message", (message) => onFirstMessage(message as A, child))
  return child
}

let profiles = 0
const withProfile = (request: RunRequest): RunRequest =>
  profileDir === undefined
    ? request
    : {
        ...request,
        profile: `${profileDir}/${String(++profiles).padStart(2, "0")}-${request.client.replace(/\W+/g, "")}-${request.mode}-${request.mode === "idle" ? request.intervalMillis : request.encoding}.cpuprofile`,
      }

const runClient = (request: RunRequest, execArgv: ReadonlyArray<string> = []) =>
  new Promise<RunResult>((resolve) => {
    const child = runChild<RunResult>(
      "./ClientRunner.ts",
      withProfile(request),
      (result) => resolve(result),
      execArgv,
    )
    child.once("exit", (code) => resolve({ rssMiB: 0, error: `client exited with ${code}` }))
  })

interface ThroughputRow {
  readonly encoding: string
  readonly client: string
  readonly throughput: RunResult
  readonly latency: RunResult
}
interface IdleRow {
  readonly client: string
  /** At Discord's interval: memory, and CPU measured as is. */
  readonly real: RunResult
  /** At the short interval: CPU per heartbeat. */
  readonly short: RunResult
}
interface ZombieRow {
  readonly client: string
  readonly result: RunResult
}

const beatsPerHour = 3_600_000 / discordInterval

/** CPU ms per idle shard per hour: per-beat CPU at the short interval × beats in an hour. */
const scaledCpuPerShardHour = (idle: IdleResult | undefined) =>
  idle && idle.heartbeats > 0 ? ((idle.cpuMicros / idle.heartbeats) * beatsPerHour) / 1000 : undefined
/** CPU ms per idle shard per hour at Discord's interval, measured directly over the window. */
const directCpuPerShardHour = (idle: IdleResult | undefined) =>
  idle ? ((idle.cpuMicros / idle.shards / idle.windowSeconds) * 3600) / 1000 : undefined
const kibPerShard = (idle: IdleResult | undefined) =>
  idle ? (idle.rssDeltaMiB * 1024) / idle.shards : undefined
const heapKibPerShard = (idle: IdleResult | undefined) =>
  idle ? (idle.heapDeltaMiB * 1024) / idle.shards : undefined

/** Whether `test` holds for two figures, or undefined when either is missing. */
const at2 = (a: number | undefined, b: number | undefined, test: (a: number, b: number) => boolean) =>
  a !== undefined && b !== undefined ? test(a, b) : undefined

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[sorted.length >> 1] ?? Number.NaN
}
const zombieStats = (z: ZombieResult | undefined) => {
  if (!z) return undefined
  const fromUnanswered = z.trials.map((t) => t.fromUnansweredMillis)
  const target = z.intervalMillis + 2 * z.rttMillis + 50
  return {
    target,
    fromUnansweredMedian: median(fromUnanswered),
    fromUnansweredMax: Math.max(...fromUnanswered),
    afterDeadlineMedian: median(fromUnanswered) - z.intervalMillis,
    fromLastAckMedian: median(z.trials.map((t) => t.fromLastAckMillis)),
    met: z.trials.length > 0 && Math.max(...fromUnanswered) <= target,
  }
}

const loadAtStart = os
  .loadavg()
  .map((l) => l.toFixed(2))
  .join(" ")

const main = async () => {
  const started = performance.now()
  console.error(`bench: generating and encoding ${count} dispatches…`)
  const { port, bytes, generator } = await new Promise<{
    port: number
    bytes: Record<string, number>
    generator: ReturnType<typeof fork>
  }>((resolve) => {
    runChild<{ port: number; bytes: Record<string, number> }>(
      "./Generator.ts",
      { count, latencyEvents, latencyRate, zombieAcks: 2 },
      (message, child) => resolve({ ...message, generator: child }),
    )
  })

  const rows: Array<ThroughputRow> = []
  if (only.has("throughput")) {
    for (const encoding of encodings) {
      const supported = clients.filter((client) => client.supports(encoding))
      // Runs interleaved (every client once, then again): a shared machine's load drifts, and
      // a side-by-side ratio should not depend on which client ran while it was busier.
      const runs = new Map<string, Array<RunResult>>(supported.map((client) => [client.name, []]))
      for (let i = 0; i < repeat; i++) {
        for (const client of supported) {
          runs
            .get(client.name)
            ?.push(await runClient({ client: client.name, encoding, mode: "throughput", port, count }))
        }
      }
      for (const client of clients) {
        if (!client.supports(encoding)) {
          rows.push({
            encoding,
            client: client.name,
            throughput: { rssMiB: 0, error: "not supported" },
            latency: { rssMiB: 0 },
          })
          continue
        }
        const all = runs.get(client.name) ?? []
        const ok = all.filter((r) => r.eventsPerSecond !== undefined)
        ok.sort((a, b) => (a.eventsPerSecond ?? 0) - (b.eventsPerSecond ?? 0))
        const throughput = ok[ok.length >> 1] ?? (all[0] as RunResult)
        const latency = await runClient({
          client: client.name,
          encoding,
          mode: "latency",
          port,
          count: latencyEvents,
        })
        console.error(`bench: ${encoding} ${client.name}`, JSON.stringify({ throughput, latency }))
        rows.push({ encoding, client: client.name, throughput, latency })
      }
    }
  }

  const idleRows: Array<IdleRow> = []
  if (only.has("idle")) {
    for (const client of clients.filter((c) => c.startMany)) {
      const idle = (intervalMillis: number) =>
        runClient(
          {
            client: client.name,
            encoding: "json",
            mode: "idle",
            port,
            count: shards,
            intervalMillis,
            windowSeconds: idleWindow,
            ...(snapshotDir !== undefined && intervalMillis === discordInterval
              ? { heapSnapshot: `${snapshotDir}/${client.name.replace(/\W+/g, "")}` }
              : {}),
          },
          ["--expose-gc"],
        )
      const real = await idle(discordInterval)
      const short = await idle(beatInterval)
      console.error(`bench: idle ${client.name}`, JSON.stringify({ real, short }))
      idleRows.push({ client: client.name, real, short })
    }
  }

  const zombieRows: Array<ZombieRow> = []
  if (only.has("zombie")) {
    for (const client of clients.filter((c) => c.heartbeats)) {
      const result = await runClient({
        client: client.name,
        encoding: "json",
        mode: "zombie",
        port,
        count: zombieTrials,
        intervalMillis: zombieInterval,
      })
      console.error(`bench: zombie ${client.name}`, JSON.stringify(result))
      zombieRows.push({ client: client.name, result })
    }
  }
  generator.disconnect()
  generator.kill()

  const seconds = (performance.now() - started) / 1000
  const fmt = (n: number | undefined, digits = 1) =>
    n === undefined || Number.isNaN(n) ? "–" : n.toFixed(digits)
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}×` : "–"
  const lines: Array<string> = []
  const cpu = os.cpus()[0]
  lines.push(
    `Measured ${new Date().toISOString().slice(0, 10)} on ${cpu?.model ?? "unknown CPU"} × ${os.cpus().length}, ` +
      `${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}; ` +
      `load average at start ${loadAtStart}; whole run ${seconds.toFixed(0)} s.`,
  )

  // Throughput and latency.
  const eps = (encoding: string, client: string) =>
    rows.find((r) => r.encoding === encoding && r.client === client)?.throughput.eventsPerSecond
  const targets: Array<{ target: string; measured: string; met: boolean | undefined }> = []
  if (rows.length > 0) {
    lines.push(
      "",
      "### Throughput and latency",
      "",
      `${count} dispatches per throughput run, median of ${repeat} runs (workload: ${Object.entries(bytes)
        .map(([k, b]) => `${k} ${(b / 1e6).toFixed(1)} MB`)
        .join(", ")}); latency over ${latencyEvents} MESSAGE_CREATEs at ${latencyRate}/s. ` +
        "Ratios are events/s of the row's client over the floor's and over @discordjs/ws's.",
      "",
      "| encoding | client | events/s | vs floor | vs @discordjs/ws | CPU µs/event | latency p50 µs | latency p99 µs | RSS MiB |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    )
    for (const row of rows) {
      if (row.throughput.error) {
        lines.push(`| ${row.encoding} | ${row.client} | ${row.throughput.error} | | | | | | |`)
        continue
      }
      const e = row.throughput.eventsPerSecond
      lines.push(
        `| ${row.encoding} | ${row.client} | ${fmt(e, 0)} | ${ratio(e, eps(row.encoding, "floor"))} | ` +
          `${row.client === "@discordjs/ws" ? "" : ratio(e, eps(row.encoding, "@discordjs/ws"))} | ` +
          `${fmt(row.throughput.cpuMicrosPerEvent)} | ${fmt(row.latency.p50Micros, 0)} | ` +
          `${fmt(row.latency.p99Micros, 0)} | ${fmt(row.throughput.rssMiB, 0)} |`,
      )
    }
    const row = (encoding: string, client: string) =>
      rows.find((r) => r.encoding === encoding && r.client === client && !r.throughput.error)
    const cpu = (encoding: string, client: string) => row(encoding, client)?.throughput.cpuMicrosPerEvent
    const p99 = (encoding: string, client: string) => row(encoding, client)?.latency.p99Micros
    const at = at2
    {
      const [v, d, f] = [eps("json", "vigil"), eps("json", "@discordjs/ws"), eps("json", "floor")]
      targets.push(
        {
          target: "json: events/s ≥ 1.1 × @discordjs/ws",
          measured: `${fmt(v, 0)} vs ${fmt(d, 0)} (${ratio(v, d)})`,
          met: at(v, d, (a, b) => a >= 1.1 * b),
        },
        {
          target: "json: events/s ≥ 0.9 × floor",
          measured: `${fmt(v, 0)} vs ${fmt(f, 0)} (${ratio(v, f)})`,
          met: at(v, f, (a, b) => a >= 0.9 * b),
        },
        {
          target: "json: CPU µs/event ≤ @discordjs/ws",
          measured: `${fmt(cpu("json", "vigil"))} vs ${fmt(cpu("json", "@discordjs/ws"))}`,
          met: at(cpu("json", "vigil"), cpu("json", "@discordjs/ws"), (a, b) => a <= b),
        },
        {
          target: "json: latency p99 ≤ @discordjs/ws",
          measured: `${fmt(p99("json", "vigil"), 0)} µs vs ${fmt(p99("json", "@discordjs/ws"), 0)} µs`,
          met: at(p99("json", "vigil"), p99("json", "@discordjs/ws"), (a, b) => a <= b),
        },
      )
    }
    for (const encoding of ["zlib-stream", "zstd-stream"]) {
      // The peer: @discordjs/ws where it has the encoding, else the floor.
      const peer = eps(encoding, "@discordjs/ws") !== undefined ? "@discordjs/ws" : "floor"
      const [v, p] = [eps(encoding, "vigil"), eps(encoding, peer)]
      targets.push({
        target: `${encoding}: events/s ≥ 4 × ${peer}`,
        measured: `${fmt(v, 0)} vs ${fmt(p, 0)} (${ratio(v, p)})`,
        met: at(v, p, (a, b) => a >= 4 * b),
      })
    }
    for (const encoding of encodings) {
      const [v, p] = [eps(encoding, "vigil"), eps(encoding, "vigil provider")]
      if (p === undefined) continue
      targets.push({
        target: `${encoding}: the provider's events/s within 10% of the shard's`,
        measured: `${fmt(p, 0)} vs ${fmt(v, 0)} (${ratio(p, v)}); CPU µs/event ${fmt(cpu(encoding, "vigil provider"))} vs ${fmt(cpu(encoding, "vigil"))}`,
        met: at(p, v, (a, b) => a >= 0.9 * b),
      })
    }
    {
      const [on, off] = [eps("json", "vigil"), eps("json", "vigil (metrics off)")]
      if (off !== undefined)
        targets.push({
          target: "json: events/s with metrics on vs off ≤ 5% apart",
          measured: `${fmt(on, 0)} vs ${fmt(off, 0)} (${ratio(on, off)}); CPU µs/event ${fmt(cpu("json", "vigil"))} vs ${fmt(cpu("json", "vigil (metrics off)"))}`,
          met: at(on, off, (a, b) => Math.abs(a - b) <= 0.05 * Math.max(a, b)),
        })
    }
  }

  // Idle shards.
  if (idleRows.length > 0) {
    const perShard = (client: string) => kibPerShard(idleRows.find((r) => r.client === client)?.real.idle)
    lines.push(
      "",
      `### ${shards} idle shards in one process`,
      "",
      `Memory: resident set (and V8 heap) added by ${shards} connected, READY, idle shards at a ` +
        `${discordInterval} ms heartbeat, over the process's baseline before the first connect ` +
        `(both after a GC), ÷ ${shards}. Identify: max_concurrency ${shards} for every client, so ` +
        "no shard waits for a bucket. CPU per shard-hour, scaled: a second run with a " +
        `${beatInterval} ms heartbeat; the process's CPU over ${idleWindow} s of idleness ÷ the ` +
        `heartbeats the generator received in that window = CPU per beat (everything idle counted ` +
        `as heartbeat cost), × ${beatsPerHour.toFixed(2)} beats an hour at ${discordInterval} ms. ` +
        `Direct: CPU over ${idleWindow} s at ${discordInterval} ms ÷ shards, × 3600 s (noisier: ` +
        "few beats fall in the window, and the process's own idle work is in it).",
      "",
      "| client | RSS KiB/shard | vs @discordjs/ws | heap used KiB/shard | heap committed KiB/shard | external KiB/shard | other native KiB/shard | all READY s | CPU µs/heartbeat | CPU ms/shard-hour (scaled) | CPU ms/shard-hour (direct) |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    )
    for (const row of idleRows) {
      const error = row.real.error ?? row.short.error
      if (error) {
        lines.push(`| ${row.client} | ${error} | | | | | | | | | |`)
        continue
      }
      const r = row.real.idle
      const s = row.short.idle
      const kib = (mib: number | undefined) => (r && mib !== undefined ? (mib * 1024) / r.shards : undefined)
      const native = r ? kib(r.rssDeltaMiB - r.heapTotalDeltaMiB - r.externalDeltaMiB) : undefined
      lines.push(
        `| ${row.client} | ${fmt(kibPerShard(r))} | ${row.client === "@discordjs/ws" ? "" : ratio(kibPerShard(r), perShard("@discordjs/ws"))} | ` +
          `${fmt(heapKibPerShard(r))} | ${fmt(kib(r?.heapTotalDeltaMiB))} | ${fmt(kib(r?.externalDeltaMiB))} | ${fmt(native)} | ${fmt(r?.readySeconds)} | ` +
          `${fmt(s && s.heartbeats > 0 ? s.cpuMicros / s.heartbeats : undefined)} | ` +
          `${fmt(scaledCpuPerShardHour(s), 2)} | ${fmt(directCpuPerShardHour(r), 2)} |`,
      )
    }
    const idleOf = (client: string) => idleRows.find((r) => r.client === client)
    const beatCpu = (client: string) => {
      const s = idleOf(client)?.short.idle
      return s && s.heartbeats > 0 ? s.cpuMicros / s.heartbeats : undefined
    }
    const heapOf = (client: string) => heapKibPerShard(idleOf(client)?.real.idle)
    const v = perShard("vigil")
    const d = perShard("@discordjs/ws")
    targets.push(
      {
        target: "idle RSS per shard ≤ 0.7 × @discordjs/ws",
        measured: `${fmt(v)} KiB vs ${fmt(d)} KiB (${ratio(v, d)})`,
        met: v !== undefined && d !== undefined ? v <= 0.7 * d : undefined,
      },
      {
        target: "idle heap per shard ≤ 16 KiB",
        measured: `${fmt(heapOf("vigil"))} KiB (@discordjs/ws ${fmt(heapOf("@discordjs/ws"))} KiB)`,
        met: heapOf("vigil") !== undefined ? heapOf("vigil")! <= 16 : undefined,
      },
      {
        target: "CPU per heartbeat ≤ @discordjs/ws",
        measured: `${fmt(beatCpu("vigil"))} µs vs ${fmt(beatCpu("@discordjs/ws"))} µs`,
        met: at2(beatCpu("vigil"), beatCpu("@discordjs/ws"), (a, b) => a <= b),
      },
    )
    const pv = perShard("vigil provider")
    if (pv !== undefined)
      targets.push({
        target: "idle through the provider within 10% of the shard's (RSS, heap, CPU per heartbeat)",
        measured:
          `RSS ${fmt(pv)} vs ${fmt(v)} KiB (${ratio(pv, v)}), heap ${fmt(heapOf("vigil provider"))} vs ${fmt(heapOf("vigil"))} KiB ` +
          `(${ratio(heapOf("vigil provider"), heapOf("vigil"))}), CPU/beat ${fmt(beatCpu("vigil provider"))} vs ${fmt(beatCpu("vigil"))} µs ` +
          `(${ratio(beatCpu("vigil provider"), beatCpu("vigil"))})`,
        met:
          v !== undefined &&
          pv <= 1.1 * v &&
          at2(heapOf("vigil provider"), heapOf("vigil"), (a, b) => a <= 1.1 * b) === true &&
          at2(beatCpu("vigil provider"), beatCpu("vigil"), (a, b) => a <= 1.1 * b) === true,
      })
  }

  // Zombie → RESUMED.
  if (zombieRows.length > 0) {
    lines.push(
      "",
      "### Zombie → RESUMED",
      "",
      `Heartbeat interval ${zombieInterval} ms; the generator ACKs two beats, then stops ACKing ` +
        "(socket open, beats read, none answered) until the shard resumes; " +
        `${zombieTrials} zombies in a row per client. Measured from the first unanswered heartbeat's ` +
        "arrival at the server to RESUMED reaching the consumer (shared monotonic clock). The " +
        "client's missed-ACK deadline passes one interval after that beat, so the target is " +
        "interval + 2 × RTT + 50 ms from the beat (RTT: median ws ping on the same loopback); " +
        "'after deadline' is the same time minus the interval. From the last ACK adds one more " +
        "interval (the beat after it is the unanswered one).",
      "",
      "| client | RTT ms | target ms | from unanswered beat, median ms | max ms | after deadline, median ms | from last ACK, median ms | met |",
      "|---|---:|---:|---:|---:|---:|---:|---|",
    )
    for (const row of zombieRows) {
      if (row.result.error) {
        lines.push(`| ${row.client} | ${row.result.error} | | | | | | |`)
        continue
      }
      const z = zombieStats(row.result.zombie)
      lines.push(
        `| ${row.client} | ${fmt(row.result.zombie?.rttMillis, 2)} | ${fmt(z?.target)} | ${fmt(z?.fromUnansweredMedian)} | ` +
          `${fmt(z?.fromUnansweredMax)} | ${fmt(z?.afterDeadlineMedian)} | ${fmt(z?.fromLastAckMedian)} | ${z?.met ? "yes" : "no"} |`,
      )
    }
    const z = zombieStats(zombieRows.find((r) => r.client === "vigil")?.result.zombie)
    targets.push({
      target: "zombie → RESUMED ≤ interval + 2 × RTT + 50 ms",
      measured: z ? `max ${fmt(z.fromUnansweredMax)} ms vs ${fmt(z.target)} ms` : "–",
      met: z?.met,
    })
  }

  if (targets.length > 0) {
    lines.push("", "### Targets (issues 11 and 12)", "", "| target | measured | met |", "|---|---|---|")
    for (const t of targets) {
      lines.push(`| ${t.target} | ${t.measured} | ${t.met === undefined ? "–" : t.met ? "yes" : "**no**"} |`)
    }
  }

  // Charts.
  const charts: Array<{ file: string; alt: string; svg: string }> = []
  const clientNames = clients.map((c) => c.name)
  if (rows.length > 0) {
    const groups = (value: (r: ThroughputRow) => number | undefined): ReadonlyArray<Group> =>
      encodings.map((encoding) => ({
        label: encoding,
        bars: clientNames.map((client) => {
          const row = rows.find((r) => r.encoding === encoding && r.client === client)
          return { label: client, value: row && !row.throughput.error ? value(row) : undefined }
        }),
      }))
    charts.push({
      file: "throughput.svg",
      alt: "events per second by encoding and client",
      svg: barChart({
        title: "Events per second (higher is better)",
        unit: "/s",
        groups: groups((r) => r.throughput.eventsPerSecond),
        marks: encodings.flatMap((encoding) => {
          const f = eps(encoding, "floor")
          return f === undefined ? [] : [{ group: encoding, value: 0.8 * f, label: "0.8 × floor" }]
        }),
      }),
    })
    charts.push({
      file: "cpu.svg",
      alt: "CPU microseconds per event by encoding and client",
      svg: barChart({
        title: "CPU µs per event (lower is better)",
        unit: "µs",
        digits: 1,
        groups: groups((r) => r.throughput.cpuMicrosPerEvent),
      }),
    })
  }
  if (idleRows.length > 0) {
    const bars = (value: (r: IdleRow) => number | undefined) =>
      idleRows.map((r) => ({ label: r.client, value: r.real.error || r.short.error ? undefined : value(r) }))
    charts.push({
      file: "idle.svg",
      alt: "idle shard memory and heartbeat CPU by client",
      svg: barChart({
        title: `${shards} idle shards in one process (lower is better)`,
        unit: "",
        digits: 1,
        groups: [
          { label: "RSS KiB per shard", bars: bars((r) => kibPerShard(r.real.idle)) },
          {
            label: `CPU ms per shard-hour of heartbeats (${discordInterval} ms)`,
            bars: bars((r) => scaledCpuPerShardHour(r.short.idle)),
          },
        ],
      }),
    })
  }
  if (zombieRows.length > 0) {
    const target = zombieStats(zombieRows.find((r) => r.result.zombie)?.result.zombie)?.target
    charts.push({
      file: "zombie.svg",
      alt: "zombie to RESUMED time by client",
      svg: barChart({
        title: "Zombie → RESUMED, from the unanswered beat (ms, lower is better)",
        unit: "ms",
        groups: [
          {
            label: `median of ${zombieTrials}, ${zombieInterval} ms interval`,
            bars: zombieRows.map((r) => ({
              label: r.client,
              value: zombieStats(r.result.zombie)?.fromUnansweredMedian,
            })),
          },
        ],
        marks:
          target === undefined
            ? []
            : [
                {
                  group: `median of ${zombieTrials}, ${zombieInterval} ms interval`,
                  value: target,
                  label: "target",
                },
              ],
      }),
    })
  }
  if (charts.length > 0) {
    lines.push("")
    for (const chart of charts) lines.push(`![${chart.alt}](charts/${chart.file})`)
  }

  const table = lines.join("\n")
  console.log(table)
  if (write) {
    const dir = new URL("../charts/", here)
    fs.mkdirSync(dir, { recursive: true })
    for (const chart of charts) fs.writeFileSync(new URL(chart.file, dir), chart.svg)
    const readme = new URL("../README.md", here)
    const current = fs.existsSync(readme) ? fs.readFileSync(readme, "utf8") : ""
    const start = "<!-- bench:results -->"
    const end = "<!-- /bench:results -->"
    const block = `${start}\n${table}\n${end}`
    const next =
      current.includes(start) && current.includes(end)
        ? current.slice(0, current.indexOf(start)) + block + current.slice(current.indexOf(end) + end.length)
        : `${current}\n${block}\n`
    fs.writeFileSync(readme, next)
    console.error(`bench: wrote ${readme.pathname} and ${charts.length} charts`)
  }
}

await main()
