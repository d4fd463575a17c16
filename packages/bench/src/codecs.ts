/**
 * Transport decompressors compared on the bench workload: CPU per event (process.cpuUsage,
 * which counts libuv's threadpool too) for `node:zlib` streams awaited per message (what
 * @discordjs/ws does), synchronous pure-JS streaming decoders, `node:zlib` streams fed a
 * whole read batch at a time, and Vigil's own codecs, through its `Decompressor` contract
 * (one call per batch of frames, inside one Effect program as a connection's reader runs).
 *
 *   node packages/bench/src/codecs.ts [messages] [name filter] [--write]
 *
 * `--write` replaces the table in packages/bench/README.md (between the `bench:codecs` markers).
 *
 * Codecs that take batches are measured with batches of 1, 16 and 128 frames (one read under
 * light, moderate and heavy load); the per-message ones with 1. Prints a markdown table;
 * every decoder's output is checked against the source text.
 */
import * as os from "node:os"
import * as zlib from "node:zlib"
import type { Decompressor } from "@vigil/gateway/Compression"
import { makeZlibDecompressor } from "@vigil/gateway-node/ZlibDecompressor"
import * as ZstdStream from "@vigil/gateway-node/ZstdStream"
import { Effect } from "effect"
import { Unzlib } from "fflate"
import { Decompress as FzstdDecompress } from "fzstd"
import * as pako from "pako"
import * as ReadmeSection from "./ReadmeSection.ts"
import { dispatchMix, encodeStream, payloadText } from "./Workload.ts"

type Push = (chunk: Uint8Array) => string | undefined | Promise<string | undefined>

/** A codec under test, as the harness drives it: one call per batch of frames. */
interface Codec {
  readonly decode: (frames: ReadonlyArray<Uint8Array>) => Effect.Effect<ReadonlyArray<string>, unknown>
  readonly close?: () => void
}

interface Candidate {
  readonly name: string
  readonly kind: "zlib-stream" | "zstd-stream"
  readonly sync: boolean
  /** Batch sizes to measure: only codecs that can use a batch get more than 1. */
  readonly batches: ReadonlyArray<number>
  readonly make: () => Codec
}

const batchSizes = [1, 16, 128]

/** A per-message codec, run frame by frame over each batch. */
const perMessage = (codec: { push: Push; close?: () => void }): Codec => ({
  decode: (frames) =>
    Effect.promise(async () => {
      const out: Array<string> = []
      for (const frame of frames) {
        const text = await codec.push(frame)
        if (text !== undefined) out.push(text)
      }
      return out
    }),
  ...(codec.close ? { close: codec.close } : {}),
})

/** A synchronous per-message codec (no promise in the way). */
const perMessageSync = (push: (chunk: Uint8Array) => string | undefined): Codec => ({
  decode: (frames) =>
    Effect.sync(() => {
      const out: Array<string> = []
      for (const frame of frames) {
        const text = push(frame)
        if (text !== undefined) out.push(text)
      }
      return out
    }),
})

const vigil = (d: Decompressor, close?: () => void): Codec => ({
  decode: d.decompress,
  ...(close ? { close } : {}),
})

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

/**
 * A node:zlib zstd stream fed a batch frame by frame without awaiting in between; message
 * boundaries come from each write's callback (the output pushed before it is that frame's).
 */
const nodeZstdWriteEach = (): Codec => {
  const stream = zlib.createZstdDecompress({ chunkSize: 64 * 1024 })
  let pending: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => pending.push(chunk))
  return {
    decode: (frames) =>
      Effect.promise(
        () =>
          new Promise<ReadonlyArray<string>>((resolve, reject) => {
            const out: Array<string> = []
            const last = frames.length - 1
            frames.forEach((frame, i) => {
              stream.write(frame, (error) => {
                if (error) return reject(error)
                out.push(decoder.decode(pending.length === 1 ? pending[0] : Buffer.concat(pending)))
                pending = []
                if (i === last) resolve(out)
              })
            })
          }),
      ),
    close: () => stream.destroy(),
  }
}

/**
 * node:zlib's Inflate fed a whole batch at once, the output split into messages by a JSON
 * object scanner (the approach of Vigil's ZstdStream, applied to zlib-stream).
 */
const nodeInflateBatch = (): Codec => {
  const stream = zlib.createInflate({ chunkSize: 64 * 1024 })
  let pending: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => pending.push(chunk))
  let depth = 0
  let inString = false
  let escaped = false
  let carry: Buffer | undefined
  return {
    decode: (frames) =>
      Effect.promise(
        () =>
          new Promise<ReadonlyArray<string>>((resolve, reject) => {
            stream.write(frames.length === 1 ? (frames[0] as Uint8Array) : Buffer.concat(frames), (error) => {
              if (error) return reject(error)
              if (carry) pending.unshift(carry)
              const buf = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending)
              pending = []
              const out: Array<string> = []
              let start = 0
              for (let i = carry ? carry.length : 0; i < buf.length; i++) {
                const c = buf[i] as number
                if (inString) {
                  if (escaped) escaped = false
                  else if (c === 0x5c) escaped = true
                  else if (c === 0x22) inString = false
                } else if (c === 0x22) inString = true
                else if (c === 0x7b || c === 0x5b) depth++
                else if ((c === 0x7d || c === 0x5d) && --depth === 0) {
                  out.push(decoder.decode(buf.subarray(start, i + 1)))
                  start = i + 1
                }
              }
              carry = start < buf.length ? buf.subarray(start) : undefined
              resolve(out)
            })
          }),
      ),
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

const limit = 32 * 1024 * 1024

const candidates: ReadonlyArray<Candidate> = [
  {
    name: "node:zlib Inflate, awaited per message (@discordjs/ws)",
    kind: "zlib-stream",
    sync: false,
    batches: [1],
    make: () =>
      perMessage(
        nodeStream(zlib.createInflate({ chunkSize: 64 * 1024, flush: zlib.constants.Z_SYNC_FLUSH }), true),
      ),
  },
  {
    name: "pako Inflate (push with Z_SYNC_FLUSH)",
    kind: "zlib-stream",
    sync: true,
    batches: [1],
    make: () => {
      const inflate = new pako.Inflate({ chunkSize: 64 * 1024 })
      let out: Array<Uint8Array> = []
      inflate.onData = (chunk) => out.push(chunk)
      return perMessageSync((chunk) => {
        inflate.push(chunk, endsWithSyncFlush(chunk) ? pako.Z_SYNC_FLUSH : pako.Z_NO_FLUSH)
        if (!endsWithSyncFlush(chunk)) return undefined
        const text = decoder.decode(concat(out))
        out = []
        return text
      })
    },
  },
  {
    name: "fflate Unzlib (streaming push)",
    kind: "zlib-stream",
    sync: true,
    batches: [1],
    make: () => {
      let out: Array<Uint8Array> = []
      const unzlib = new Unzlib((chunk) => out.push(chunk))
      return perMessageSync((chunk) => {
        unzlib.push(chunk)
        if (!endsWithSyncFlush(chunk)) return undefined
        const text = decoder.decode(concat(out))
        out = []
        return text
      })
    },
  },
  {
    name: "node:zlib Inflate, whole batch written at once, JSON scanner",
    kind: "zlib-stream",
    sync: false,
    batches: batchSizes,
    make: nodeInflateBatch,
  },
  {
    name: "**Vigil ZlibDecompressor** (pako's inflate, own loop)",
    kind: "zlib-stream",
    sync: true,
    batches: batchSizes,
    make: () => vigil(makeZlibDecompressor({ maxMessageBytes: limit })),
  },
  {
    name: "node:zlib ZstdDecompress, awaited per message",
    kind: "zstd-stream",
    sync: false,
    batches: [1],
    make: () => perMessage(nodeStream(zlib.createZstdDecompress({ chunkSize: 64 * 1024 }), false)),
  },
  {
    name: "fzstd Decompress (streaming push; Vigil's previous decoder, ~same cost)",
    kind: "zstd-stream",
    sync: true,
    batches: [1],
    make: () => {
      let out: Array<Uint8Array> = []
      const zstd = new FzstdDecompress((chunk) => {
        out.push(chunk)
      })
      return perMessageSync((chunk) => {
        zstd.push(chunk)
        const text = decoder.decode(concat(out))
        out = []
        return text
      })
    },
  },
  {
    name: "node:zlib ZstdDecompress, batch written frame by frame, boundaries from write callbacks",
    kind: "zstd-stream",
    sync: false,
    batches: batchSizes,
    make: nodeZstdWriteEach,
  },
  {
    name: "**Vigil ZstdStream** (node:zlib, batch written at once, JSON scanner), 16 KiB chunks",
    kind: "zstd-stream",
    sync: false,
    batches: batchSizes,
    make: () => {
      const context = ZstdStream.makeUnscoped({ maxMessageBytes: limit, chunkBytes: 16 * 1024 })
      return vigil(context, context.close)
    },
  },
  {
    name: "**Vigil ZstdStream** (node:zlib, batch written at once, JSON scanner), 64 KiB chunks (default)",
    kind: "zstd-stream",
    sync: false,
    batches: batchSizes,
    make: () => {
      const context = ZstdStream.makeUnscoped({ maxMessageBytes: limit })
      return vigil(context, context.close)
    },
  },
]

interface Measured {
  readonly cpuMicrosPerEvent: number
  readonly wallMicrosPerEvent: number
}

const run = (
  candidate: Candidate,
  batch: number,
  frames: ReadonlyArray<Uint8Array>,
  texts: ReadonlyArray<string>,
): Promise<Measured> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const codec = candidate.make()
      const batches: Array<ReadonlyArray<Uint8Array>> = []
      for (let i = 0; i < frames.length; i += batch) batches.push(frames.slice(i, i + batch))
      let mismatch = 0
      let at = 0
      const startCpu = process.cpuUsage()
      const startWall = performance.now()
      for (const frames of batches) {
        const out = yield* codec.decode(frames)
        for (const text of out) if (text !== texts[at++]) mismatch++
      }
      const wall = performance.now() - startWall
      const cpu = process.cpuUsage(startCpu)
      codec.close?.()
      if (mismatch > 0 || at !== texts.length) {
        console.error(
          `${candidate.name} (batch ${batch}): ${mismatch} mismatches, ${at}/${texts.length} messages`,
        )
        process.exitCode = 1
      }
      return {
        cpuMicrosPerEvent: (cpu.user + cpu.system) / texts.length,
        wallMicrosPerEvent: (wall * 1000) / texts.length,
      }
    }),
  )

/** The baseline every encoding pays after decompressing: JSON.parse of the same texts. */
const parseCost = (texts: ReadonlyArray<string>): number => {
  const start = process.cpuUsage()
  let n = 0
  for (const text of texts) n += (JSON.parse(text) as { s: number }).s > 0 ? 1 : 0
  const cpu = process.cpuUsage(start)
  return n > 0 ? (cpu.user + cpu.system) / texts.length : 0
}

const main = async () => {
  const args = process.argv.slice(2).filter((a) => a !== "--write")
  const write = process.argv.includes("--write")
  const count = Number(args[0] ?? 20_000)
  const only = args[1]
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
    `Measured ${new Date().toISOString().slice(0, 10)}: Node ${process.version}, ${cpu?.model ?? "unknown CPU"} × ` +
      `${os.cpus().length}, load average at start ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}; ` +
      `${count} messages per run, best of 3.`,
  )
  lines.push("")
  lines.push(`| decoder | workload | sync | batch | µs CPU/event | µs wall/event |`)
  lines.push(`|---|---|---|---:|---:|---:|`)
  for (const workload of workloads) {
    const texts = workload.dispatches.map((d, i) => payloadText(d, i + 1))
    const bytes = texts.reduce((n, t) => n + t.length, 0)
    lines.push(`| JSON.parse only (baseline) | ${workload.name} | yes | | ${parseCost(texts).toFixed(1)} | |`)
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
      if (only !== undefined && !candidate.name.includes(only)) continue
      for (const batch of candidate.batches) {
        // Warm up on a separate context, then measure fresh ones over the whole stream: best of 3.
        await run(candidate, batch, frames[candidate.kind].slice(0, 2000), texts.slice(0, 2000))
        const runs: Array<Measured> = []
        for (let i = 0; i < 3; i++) runs.push(await run(candidate, batch, frames[candidate.kind], texts))
        const m = runs.reduce((a, b) => (a.cpuMicrosPerEvent <= b.cpuMicrosPerEvent ? a : b))
        lines.push(
          `| ${candidate.name} | ${workload.name} | ${candidate.sync ? "yes" : "no"} | ${batch} | ${m.cpuMicrosPerEvent.toFixed(1)} | ${m.wallMicrosPerEvent.toFixed(1)} |`,
        )
      }
    }
  }
  console.log(lines.join("\n"))
  if (write && !ReadmeSection.write("codecs", lines)) {
    console.error("codecs: README markers not found; nothing written")
    process.exitCode = 1
  }
}

await main()
