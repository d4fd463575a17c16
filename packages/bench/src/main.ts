/**
 * The bench, in one command:
 *
 *   node packages/bench/src/main.ts [--count N] [--latency-events N] [--latency-rate N] [--no-write]
 *
 * Forks the load generator (Generator.ts), then, for every encoding and every client that
 * supports it, a fresh client process (ClientRunner.ts) for throughput and one for latency,
 * one at a time so they do not share the CPU. Writes the table to packages/bench/README.md
 * between the `bench:results` markers, with the machine's details.
 */
import { fork } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import type { RunRequest, RunResult } from "./ClientRunner.ts"
import { clients } from "./Clients.ts"
import { encodings } from "./Workload.ts"

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const count = arg("count", 40_000)
const latencyEvents = arg("latency-events", 3_000)
const latencyRate = arg("latency-rate", 1_000)
const write = !process.argv.includes("--no-write")
const here = new URL(".", import.meta.url)

const runChild = <A>(
  script: string,
  argument: unknown,
  onFirstMessage: (message: A, child: ReturnType<typeof fork>) => void,
) => {
  const child = fork(new URL(script, here), [JSON.stringify(argument)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  })
  child.once("message", (message) => onFirstMessage(message as A, child))
  return child
}

const runClient = (request: RunRequest) =>
  new Promise<RunResult>((resolve) => {
    const child = runChild<RunResult>("./ClientRunner.ts", request, (result) => resolve(result))
    child.once("exit", (code) => resolve({ rssMiB: 0, error: `client exited with ${code}` }))
  })

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
      { count, latencyEvents, latencyRate },
      (message, child) => resolve({ ...message, generator: child }),
    )
  })
  const rows: Array<{ encoding: string; client: string; throughput: RunResult; latency: RunResult }> = []
  for (const encoding of encodings) {
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
      const throughput = await runClient({ client: client.name, encoding, mode: "throughput", port, count })
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
  generator.disconnect()
  generator.kill()

  const seconds = (performance.now() - started) / 1000
  const fmt = (n: number | undefined, digits = 1) => (n === undefined ? "–" : n.toFixed(digits))
  const lines: Array<string> = []
  const cpu = os.cpus()[0]
  lines.push(
    `Measured ${new Date().toISOString().slice(0, 10)} on ${cpu?.model ?? "unknown CPU"} × ${os.cpus().length}, ` +
      `${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}; ` +
      `${count} dispatches per throughput run (workload: ${Object.entries(bytes)
        .map(([k, b]) => `${k} ${(b / 1e6).toFixed(1)} MB`)
        .join(
          ", ",
        )}), latency over ${latencyEvents} MESSAGE_CREATEs at ${latencyRate}/s; whole run ${seconds.toFixed(0)} s.`,
  )
  lines.push("")
  lines.push(
    "| encoding | client | events/s | vs floor | CPU µs/event | latency p50 µs | latency p99 µs | RSS MiB |",
  )
  lines.push("|---|---|---:|---:|---:|---:|---:|---:|")
  for (const row of rows) {
    const floorRow = rows.find((r) => r.encoding === row.encoding && r.client === "floor")
    const ratio =
      row.throughput.eventsPerSecond && floorRow?.throughput.eventsPerSecond
        ? `${(row.throughput.eventsPerSecond / floorRow.throughput.eventsPerSecond).toFixed(2)}×`
        : "–"
    if (row.throughput.error) {
      lines.push(`| ${row.encoding} | ${row.client} | ${row.throughput.error} | | | | | |`)
      continue
    }
    lines.push(
      `| ${row.encoding} | ${row.client} | ${fmt(row.throughput.eventsPerSecond, 0)} | ${ratio} | ${fmt(row.throughput.cpuMicrosPerEvent)} | ` +
        `${fmt(row.latency.p50Micros, 0)} | ${fmt(row.latency.p99Micros, 0)} | ${fmt(row.throughput.rssMiB, 0)} |`,
    )
  }
  const table = lines.join("\n")
  console.log(table)
  if (write) {
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
    console.error(`bench: wrote ${readme.pathname}`)
  }
}

await main()
