/**
 * Transport decompressors compared on the bench workload: CPU per event (process.cpuUsage,
 * which counts libuv's threadpool too) for `node:zlib` streams awaited per message (what
 * @discordjs/ws does) against synchronous pure-JS streaming decoders, and Vigil's own codecs.
 *
 *   node packages/bench/src/codecs.ts [messages]
 *
 * Prints a markdown table; every decoder's output is checked against the source text.
 */
import * as os from "node:os"
import * as zlib from "node:zlib"
import { makeZlibDecompressor } from "@vigil/gateway-node/ZlibDecompressor"
import { makeZstdDecompressor } from "@vigil/gateway-node/ZstdDecompressor"
import { Result } from "effect"
import { Unzlib } from "fflate"
import { Decompress as FzstdDecompress } from "fzstd"
import * as pako from "pako"
import { dispatchMix, encodeStream, payloadText } from "./Workload.ts"

type Push = (chunk: Uint8Array) => string | undefined | Promise<string | undefined>

interface Candidate {
  readonly name: string
  readonly kind: "zlib-stream" | "zstd-stream"
  readonly sync: boolean
  readonly make: () => { push: Push; close?: () => void }
}

const decoder = new TextDecoder()
const endsWithSyncFlush = (b: Uint8Array) =>
  b.length >= 4 &&
  b[b.length - 4] === 0 &&
  b[b.length - 3] === 0 &&
  b[b.length - 2] === 0xff &&
  b[b.length - 1] === 0xff

/** A node:zlib stream, each message written and awaited, as @discordjs/ws does. */
const nodeStream = (stream: zlib.Inflate | zlib.ZstdDecompress, zlibFraming: boolean) => {
  let pending: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => pending.push(chunk))
  return {
    push: (chunk: Uint8Array) =>
      new Promise<string | undefined>((resolve, reject) => {
        stream.write(chunk, (error) => {
          if (error) return reject(error)
          if (zlibFraming && !endsWithSyncFlush(chunk)) return resolve(undefined)
          const text = decoder.decode(pending.length === 1 ? pending[0] : Buffer.concat(pending))
          pending = []
          resolve(text)
        })
      }),
    close: () => stream.destroy(),
  }
}

const concat = (chunks: Array<Uint8Array>): Uint8Array => {
  if (chunks.length === 1) return chunks[0] as Uint8Array
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}

const candidates: ReadonlyArray<Candidate> = [
  {
    name: "node:zlib Inflate, awaited per message (@discordjs/ws)",
    kind: "zlib-stream",
    sync: false,
    make: () =>
      nodeStream(zlib.createInflate({ chunkSize: 64 * 1024, flush: zlib.constants.Z_SYNC_FLUSH }), true),
  },
  {
    name: "pako Inflate (push with Z_SYNC_FLUSH)",
    kind: "zlib-stream",
    sync: true,
    make: () => {
      const inflate = new pako.Inflate({ chunkSize: 64 * 1024 })
      let out: Array<Uint8Array> = []
      inflate.onData = (chunk) => out.push(chunk)
      return {
        push: (chunk) => {
          inflate.push(chunk, endsWithSyncFlush(chunk) ? pako.Z_SYNC_FLUSH : pako.Z_NO_FLUSH)
          if (!endsWithSyncFlush(chunk)) return undefined
          const text = decoder.decode(concat(out))
          out = []
          return text
        },
      }
    },
  },
  {
    name: "fflate Unzlib (streaming push)",
    kind: "zlib-stream",
    sync: true,
    make: () => {
      let out: Array<Uint8Array> = []
      const unzlib = new Unzlib((chunk) => out.push(chunk))
      return {
        push: (chunk) => {
          unzlib.push(chunk)
          if (!endsWithSyncFlush(chunk)) return undefined
          const text = decoder.decode(concat(out))
          out = []
          return text
        },
      }
    },
  },
  {
    name: "Vigil ZlibDecompressor (pako's inflate, own loop)",
    kind: "zlib-stream",
    sync: true,
    make: () => vigil(makeZlibDecompressor({ maxMessageBytes: 32 * 1024 * 1024 })),
  },
  {
    name: "node:zlib ZstdDecompress, awaited per message",
    kind: "zstd-stream",
    sync: false,
    make: () => nodeStream(zlib.createZstdDecompress({ chunkSize: 64 * 1024 }), false),
  },
  {
    name: "fzstd Decompress (streaming push)",
    kind: "zstd-stream",
    sync: true,
    make: () => {
      let out: Array<Uint8Array> = []
      const zstd = new FzstdDecompress((chunk) => {
        out.push(chunk)
      })
      return {
        push: (chunk) => {
          zstd.push(chunk)
          const text = decoder.decode(concat(out))
          out = []
          return text
        },
      }
    },
  },
  {
    name: "Vigil ZstdDecompressor",
    kind: "zstd-stream",
    sync: true,
    make: () => vigil(makeZstdDecompressor({ maxMessageBytes: 32 * 1024 * 1024 })),
  },
]

function vigil(d: { push: (c: Uint8Array) => Result.Result<string | undefined, unknown> }) {
  return {
    push: (chunk: Uint8Array) => {
      const r = d.push(chunk)
      return Result.isSuccess(r) ? r.success : `error: ${String(r.failure)}`
    },
  }
}

interface Measured {
  readonly cpuMicrosPerEvent: number
  readonly wallMicrosPerEvent: number
}

const run = async (
  candidate: Candidate,
  frames: ReadonlyArray<Uint8Array>,
  texts: ReadonlyArray<string>,
): Promise<Measured> => {
  const codec = candidate.make()
  let mismatch = 0
  let at = 0
  const startCpu = process.cpuUsage()
  const startWall = performance.now()
  if (candidate.sync) {
    for (const frame of frames) {
      const text = codec.push(frame) as string | undefined
      if (text !== undefined && text !== texts[at++]) mismatch++
    }
  } else {
    for (const frame of frames) {
      const text = await codec.push(frame)
      if (text !== undefined && text !== texts[at++]) mismatch++
    }
  }
  const wall = performance.now() - startWall
  const cpu = process.cpuUsage(startCpu)
  codec.close?.()
  if (mismatch > 0 || at !== texts.length) {
    console.error(`${candidate.name}: ${mismatch} mismatches, ${at}/${texts.length} messages`)
    process.exitCode = 1
  }
  return {
    cpuMicrosPerEvent: (cpu.user + cpu.system) / texts.length,
    wallMicrosPerEvent: (wall * 1000) / texts.length,
  }
}

/** The baseline every encoding pays after decompressing: JSON.parse of the same texts. */
const parseCost = (texts: ReadonlyArray<string>): number => {
  const start = process.cpuUsage()
  let n = 0
  for (const text of texts) n += (JSON.parse(text) as { s: number }).s > 0 ? 1 : 0
  const cpu = process.cpuUsage(start)
  return n > 0 ? (cpu.user + cpu.system) / texts.length : 0
}

const main = async () => {
  const count = Number(process.argv[2] ?? 20_000)
  const workloads = [
    { name: "small events only", dispatches: dispatchMix(count, { guildCreateEvery: 0 }) },
    {
      name: "mix (1 GUILD_CREATE of ~100 KB per 500)",
      dispatches: dispatchMix(count, { guildCreateEvery: 500 }),
    },
  ]
  const lines: Array<string> = []
  const cpu = os.cpus()[0]
  lines.push(
    `Node ${process.version}, ${cpu?.model ?? "unknown CPU"} × ${os.cpus().length}, ${count} messages per run`,
  )
  lines.push("")
  lines.push(`| decoder | workload | sync | µs CPU/event | µs wall/event |`)
  lines.push(`|---|---|---|---:|---:|`)
  for (const workload of workloads) {
    const texts = workload.dispatches.map((d, i) => payloadText(d, i + 1))
    const bytes = texts.reduce((n, t) => n + t.length, 0)
    lines.push(`| JSON.parse only (baseline) | ${workload.name} | yes | ${parseCost(texts).toFixed(1)} | |`)
    const frames = {
      "zlib-stream": await encodeStream("zlib-stream", texts),
      "zstd-stream": await encodeStream("zstd-stream", texts),
    }
    for (const kind of ["zlib-stream", "zstd-stream"] as const) {
      const compressed = frames[kind].reduce((n, f) => n + f.length, 0)
      console.error(
        `${workload.name}: ${kind} ${(bytes / 1e6).toFixed(1)} MB → ${(compressed / 1e6).toFixed(1)} MB`,
      )
    }
    for (const candidate of candidates) {
      // Warm up on a separate context, then measure a fresh one over the whole stream.
      await run(candidate, frames[candidate.kind].slice(0, 2000), texts.slice(0, 2000))
      const best = [await run(candidate, frames[candidate.kind], texts)]
      best.push(await run(candidate, frames[candidate.kind], texts))
      const m = best.reduce((a, b) => (a.cpuMicrosPerEvent <= b.cpuMicrosPerEvent ? a : b))
      lines.push(
        `| ${candidate.name} | ${workload.name} | ${candidate.sync ? "yes" : "no"} | ${m.cpuMicrosPerEvent.toFixed(1)} | ${m.wallMicrosPerEvent.toFixed(1)} |`,
      )
    }
  }
  console.log(lines.join("\n"))
}

await main()
