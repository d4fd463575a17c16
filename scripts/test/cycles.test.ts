/** The cycle check: finds package cycles (dev dependencies too) and runtime import cycles. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { onTestFinished } from "vitest"
import { fileGraph, findCycle, packageGraph } from "../cycles.ts"

/** A throwaway workspace made of `files` (path → content), removed when the test ends. */
const fixture = (files: Record<string, unknown>) => {
  const root = mkdtempSync(join(tmpdir(), "vigil-cycles-"))
  onTestFinished(() => rmSync(root, { recursive: true, force: true }))
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), typeof content === "string" ? content : JSON.stringify(content))
  }
  return root
}

const exportsMap = { ".": { "@vigil/source": "./src/index.ts" }, "./*": { "@vigil/source": "./src/*.ts" } }

describe("findCycle", () => {
  it("returns undefined for a graph without cycles", () => {
    assert.isUndefined(
      findCycle(
        new Map([
          ["a", ["b", "c"]],
          ["b", ["c"]],
          ["c", []],
        ]),
      ),
    )
  })

  it("returns the cycle as a closed path", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["b"]],
    ])
    assert.deepStrictEqual(findCycle(graph), ["b", "c", "b"])
  })
})

describe("packageGraph", () => {
  it("sees a cycle made by a dev dependency", () => {
    const root = fixture({
      "packages/core/package.json": { name: "@x/core", devDependencies: { "@x/kit": "workspace:^" } },
      "packages/kit/package.json": {
        name: "@x/kit",
        dependencies: { "@x/core": "workspace:^", effect: "4" },
      },
    })
    assert.deepStrictEqual(findCycle(packageGraph(root)), ["@x/core", "@x/kit", "@x/core"])
  })
})

describe("fileGraph", () => {
  it("follows relative and package imports, and skips type-only ones", () => {
    const root = fixture({
      "packages/core/package.json": { name: "@x/core", exports: exportsMap },
      "packages/core/src/index.ts": 'export * as A from "./A.ts"\n',
      "packages/core/src/A.ts": 'import type { B } from "@x/kit/B"\nexport const a = 1\n',
      "packages/kit/package.json": { name: "@x/kit", exports: exportsMap },
      "packages/kit/src/B.ts": 'import { A } from "@x/core"\nexport type B = typeof A\n',
    })
    const graph = fileGraph(root)
    assert.deepStrictEqual(graph.get("packages/kit/src/B.ts"), ["packages/core/src/index.ts"])
    assert.deepStrictEqual(graph.get("packages/core/src/A.ts"), [])
    assert.isUndefined(findCycle(graph))
  })

  it("sees a runtime import cycle across packages", () => {
    const root = fixture({
      "packages/core/package.json": { name: "@x/core", exports: exportsMap },
      "packages/core/src/A.ts": 'import { type B, b } from "@x/kit/B"\nexport const a = (x: B) => x + b\n',
      "packages/kit/package.json": { name: "@x/kit", exports: exportsMap },
      "packages/kit/src/B.ts":
        'import { a } from "@x/core/A"\nexport type B = number\nexport const b = a(1)\n',
    })
    assert.deepStrictEqual(findCycle(fileGraph(root)), [
      "packages/core/src/A.ts",
      "packages/kit/src/B.ts",
      "packages/core/src/A.ts",
    ])
  })
})
