/**
 * What an idle shard keeps on the heap, by constructor: the difference between two V8 heap
 * snapshots (before the first connect and once every shard is READY, both after a GC; written
 * by `main.ts --only idle --heap-snapshot DIR`), divided by the number of shards.
 *
 *   node packages/bench/src/heapdiff.ts DIR/vigil-before.heapsnapshot DIR/vigil-after.heapsnapshot SHARDS [TOP] [--write]
 *
 * `--write` puts the table in packages/bench/README.md, between the `bench:heap` markers.
 */
import * as fs from "node:fs"
import * as ReadmeSection from "./ReadmeSection.ts"

interface Snapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: ReadonlyArray<string>
      readonly node_types: ReadonlyArray<unknown>
    }
  }
  readonly nodes: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

/** Bytes and count per kind of node: objects by constructor, closures by function name. */
const tally = (file: string): Map<string, { bytes: number; count: number }> => {
  const snap = JSON.parse(fs.readFileSync(file, "utf8")) as Snapshot
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0] as ReadonlyArray<string>
  const width = fields.length
  const [typeAt, nameAt, sizeAt] = [
    fields.indexOf("type"),
    fields.indexOf("name"),
    fields.indexOf("self_size"),
  ]
  const out = new Map<string, { bytes: number; count: number }>()
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!
    const name = snap.strings[snap.nodes[i + nameAt]!]!
    const key =
      type === "object"
        ? name
        : type === "closure"
          ? `closure ${name || "(anonymous)"}`
          : type.includes("string")
            ? "(strings)"
            : type === "hidden" || type === "object shape" || type === "code"
              ? `(${type}) ${name.split(" ")[0]}`
              : `(${type})`
    const entry = out.get(key) ?? { bytes: 0, count: 0 }
    entry.bytes += snap.nodes[i + sizeAt]!
    entry.count++
    out.set(key, entry)
  }
  return out
}

const write = process.argv.includes("--write")
const [before, after, shardsArg, topArg] = process.argv.slice(2).filter((a) => a !== "--write")
if (before === undefined || after === undefined || shardsArg === undefined) {
  console.error("usage: heapdiff.ts BEFORE.heapsnapshot AFTER.heapsnapshot SHARDS [TOP]")
  process.exit(2)
}
const shards = Number(shardsArg)
const a = tally(before)
const b = tally(after)
const rows = [...b.entries()]
  .map(([key, { bytes, count }]) => ({
    key,
    bytes: (bytes - (a.get(key)?.bytes ?? 0)) / shards,
    count: (count - (a.get(key)?.count ?? 0)) / shards,
  }))
  .filter((row) => row.bytes > 0)
  .sort((x, y) => y.bytes - x.bytes)
const total = rows.reduce((sum, row) => sum + row.bytes, 0)
const lines = [
  `Measured ${new Date().toISOString().slice(0, 10)} with ${shards} shards (\`heapdiff.ts\`): what the heap grew by, ` +
    "per shard, from before the first connect to all READY (both after a GC), by constructor; " +
    "closures by function name, V8's internal objects in parentheses.",
  "",
  "| retained per shard | bytes | objects |",
  "|---|---:|---:|",
  ...rows
    .slice(0, Number(topArg ?? 25))
    .map((row) => `| ${row.key.replace(/\|/g, "\\|")} | ${row.bytes.toFixed(0)} | ${row.count.toFixed(1)} |`),
  `| **all (growth only)** | **${total.toFixed(0)}** | |`,
]
console.log(lines.join("\n"))
if (write && !ReadmeSection.write("heap", lines)) {
  console.error("heapdiff: README markers not found; nothing written")
  process.exitCode = 1
}
