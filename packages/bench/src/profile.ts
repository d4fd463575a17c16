/**
 * Top self-time frames of a V8 CPU profile (`node --cpu-prof`, or `main.ts --cpu-prof DIR`):
 *
 *   node packages/bench/src/profile.ts FILE.cpuprofile [--top N]
 *
 * Prints the frames with the most self time (function, file:line, share of the samples),
 * then the same time summed by package (or by node: internals / the program). A
 * `.heapprofile` (sampling heap profiler: what is still live, by allocation site) is read
 * the same way, in bytes.
 */
import * as fs from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const file = process.argv[2]
if (file === undefined) {
  console.error("usage: node profile.ts FILE.cpuprofile [--top N]")
  process.exit(2)
}
const topAt = process.argv.indexOf("--top")
const top = topAt >= 0 ? Number(process.argv[topAt + 1]) : 20

interface HeapNode extends ProfileNode {
  readonly selfSize: number
  readonly children: ReadonlyArray<HeapNode>
}
const raw = JSON.parse(fs.readFileSync(file, "utf8")) as Profile | { readonly head: HeapNode }
const heap = "head" in raw
const flatten = (node: HeapNode): Array<HeapNode> => [node, ...node.children.flatMap(flatten)]
const nodes: ReadonlyArray<ProfileNode> = "head" in raw ? flatten(raw.head) : raw.nodes
const byId = new Map(nodes.map((n) => [n.id, n]))
/** Self time in µs, or (heap) live bytes. */
const selfMicros = new Map<number, number>()
if ("head" in raw) {
  for (const node of nodes as ReadonlyArray<HeapNode>) selfMicros.set(node.id, node.selfSize)
} else {
  raw.samples.forEach((id, i) => {
    selfMicros.set(id, (selfMicros.get(id) ?? 0) + (raw.timeDeltas[i] ?? 0))
  })
}
const total = [...selfMicros.values()].reduce((a, b) => a + b, 0)

const shortUrl = (url: string) => {
  const pkg = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url)
  if (pkg) return `${pkg[1]}/${pkg[2]}`
  const own = /\/packages\/(.*)$/.exec(url)
  if (own) return `@vigil/${own[1]}`
  return url.replace(/^file:\/\//, "")
}
const packageOf = (url: string) => {
  if (url === "") return "(native / V8)"
  if (url.startsWith("node:")) return "node: internals"
  const pkg = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg) return pkg[1] as string
  const own = /\/packages\/([^/]+)\//.exec(url)
  if (own) return `@vigil/${own[1]}`
  return url
}

const frames = new Map<string, number>()
const packages = new Map<string, number>()
for (const [id, micros] of selfMicros) {
  const node = byId.get(id)
  if (!node) continue
  const { functionName, url, lineNumber } = node.callFrame
  const key = `${functionName || "(anonymous)"}  ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ""}`
  frames.set(key, (frames.get(key) ?? 0) + micros)
  const pkg = packageOf(url)
  packages.set(pkg, (packages.get(pkg) ?? 0) + micros)
}

const print = (title: string, entries: Map<string, number>, n: number) => {
  console.log(`\n${title}`)
  for (const [key, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    const amount = heap
      ? `${(micros / 1024).toFixed(0).padStart(8)} KiB`
      : `${(micros / 1000).toFixed(1).padStart(8)} ms`
    console.log(`${((100 * micros) / total).toFixed(1).padStart(5)}%  ${amount}  ${key}`)
  }
}
console.log(
  `${file}: ${heap ? `${(total / 2 ** 20).toFixed(1)} MiB live` : `${(total / 1000).toFixed(0)} ms sampled`}`,
)
print(heap ? "live bytes by allocation site" : "self time by frame", frames, top)
print(heap ? "live bytes by package" : "self time by package", packages, 12)
