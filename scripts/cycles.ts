/**
 * The cycle check (`node scripts/cycles.ts`, run by `scripts/dev.sh test`): the workspace's
 * package graph (dependencies of every kind, dev included) and the graph of runtime imports
 * between the source files of packages/*\/src must both be acyclic. Type-only imports are
 * erased at build time, so they are left out (as madge's `skipTypeImports` does).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"

export type Graph = ReadonlyMap<string, ReadonlyArray<string>>

/** One cycle as a closed path (`a → b → a`), or undefined when the graph has none. */
export const findCycle = (graph: Graph): ReadonlyArray<string> | undefined => {
  const done = new Set<string>()
  const path: Array<string> = []
  const onPath = new Set<string>()
  const visit = (node: string): ReadonlyArray<string> | undefined => {
    if (onPath.has(node)) return [...path.slice(path.indexOf(node)), node]
    if (done.has(node)) return undefined
    path.push(node)
    onPath.add(node)
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next)
      if (cycle !== undefined) return cycle
    }
    path.pop()
    onPath.delete(node)
    done.add(node)
    return undefined
  }
  for (const node of graph.keys()) {
    const cycle = visit(node)
    if (cycle !== undefined) return cycle
  }
  return undefined
}

interface Manifest {
  readonly name: string
  readonly dir: string
  readonly dependencies: ReadonlyArray<string>
  readonly exports: unknown
}

const workspace = (root: string): ReadonlyArray<Manifest> =>
  ["packages", "scratchpad"]
    .flatMap((top) => {
      const dir = join(root, top)
      if (!existsSync(join(dir, "package.json"))) {
        return existsSync(dir) ? readdirSync(dir).map((name) => join(dir, name)) : []
      }
      return [dir]
    })
    .filter((dir) => existsSync(join(dir, "package.json")))
    .map((dir) => {
      const json = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
      const kinds = ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"]
      return {
        name: json.name,
        dir,
        dependencies: kinds.flatMap((kind) => Object.keys(json[kind] ?? {})),
        exports: json.exports,
      }
    })

/** Workspace packages and the workspace packages each depends on (any kind of dependency). */
export const packageGraph = (root: string): Graph => {
  const manifests = workspace(root)
  const names = new Set(manifests.map((m) => m.name))
  return new Map(manifests.map((m) => [m.name, m.dependencies.filter((d) => names.has(d))]))
}

const sourceFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sourceFiles(path)
    return path.endsWith(".ts") ? [path] : []
  })

/** The `@vigil/source` target of a package subpath, through its `exports` patterns. */
const exportTarget = (exports: unknown, subpath: string): string | undefined => {
  if (typeof exports !== "object" || exports === null) return undefined
  const source = (entry: unknown) =>
    typeof entry === "object" && entry !== null ? (entry as Record<string, unknown>)["@vigil/source"] : entry
  for (const [key, entry] of Object.entries(exports)) {
    const target = source(entry)
    if (typeof target !== "string") continue
    if (key === subpath) return target
    const star = key.indexOf("*")
    if (star >= 0 && subpath.startsWith(key.slice(0, star)) && subpath.endsWith(key.slice(star + 1))) {
      return target.replace("*", subpath.slice(star, subpath.length - (key.length - star - 1)))
    }
  }
  return undefined
}

// `import type …` / `export type …` are erased; everything else (including `import { type A }`,
// which verbatimModuleSyntax keeps as a side-effect import) is a runtime edge.
const importPattern = /^\s*(?:import|export)\s+(?!type\s)(?:[^"';]*?\sfrom\s+)?["']([^"']+)["']/gm

/** Source files of packages/*\/src and the files each one imports at runtime, paths from root. */
export const fileGraph = (root: string): Graph => {
  const manifests = workspace(root).filter((m) => existsSync(join(m.dir, "src")))
  const byName = new Map(manifests.map((m) => [m.name, m]))
  const graph = new Map<string, Array<string>>()
  for (const manifest of manifests) {
    for (const file of sourceFiles(join(manifest.dir, "src"))) {
      const edges: Array<string> = []
      for (const [, specifier] of readFileSync(file, "utf8").matchAll(importPattern)) {
        if (specifier === undefined) continue
        if (specifier.startsWith(".")) {
          edges.push(resolve(dirname(file), specifier))
          continue
        }
        const [scope, name, ...rest] = specifier.split("/")
        const target = byName.get(`${scope}/${name}`)
        const path = target && exportTarget(target.exports, rest.length === 0 ? "." : `./${rest.join("/")}`)
        if (target && path) edges.push(resolve(target.dir, path))
      }
      graph.set(relative(root, file), [...new Set(edges.map((edge) => relative(root, edge)))])
    }
  }
  return graph
}

if (import.meta.main) {
  const root = resolve(dirname(new URL(import.meta.url).pathname), "..")
  let failed = false
  for (const [what, graph] of [
    ["packages", packageGraph(root)],
    ["files", fileGraph(root)],
  ] as const) {
    const cycle = findCycle(graph)
    if (cycle === undefined) {
      console.log(`cycles: none between ${graph.size} ${what}`)
    } else {
      console.error(`cycles: a cycle between ${what}: ${cycle.join(" → ")}`)
      failed = true
    }
  }
  process.exitCode = failed ? 1 : 0
}
