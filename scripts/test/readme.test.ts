/**
 * README samples: each TypeScript block is its sample file, byte for byte; no doc links, and no
 * code cites, a file that is not there (see scripts/readme.ts).
 */
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { check, deadCitations, deadLinks, sync } from "../readme.ts"

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const files: Record<string, string> = { "a.ts": 'import { Effect } from "effect"\n\nEffect.log("a")\n' }
const readFile = (path: string) => files[path]

describe("README samples", () => {
  it("every README's samples are their files", () => {
    assert.deepStrictEqual(check(root), [])
  })

  it("a block equal to its file passes; output and shell blocks need no file", () => {
    const markdown = "# x\n\n```sh\nnpm test\n```\n<!-- sample: a.ts -->\n```ts\n" + files["a.ts"] + "```\n"
    assert.deepStrictEqual(sync(markdown, readFile), { text: markdown, problems: [] })
  })

  it("finds a block that drifted from its file, and --write brings the file back", () => {
    const drifted = '<!-- sample: a.ts -->\n```ts\nimport { Effect } from "effect"\n\nEffect.log("b")\n```\n'
    const { text, problems } = sync(drifted, readFile)
    assert.deepStrictEqual(problems, ["line 2: differs from a.ts"])
    assert.strictEqual(text, "<!-- sample: a.ts -->\n```ts\n" + files["a.ts"] + "```\n")
  })

  it("finds a TypeScript block without a file, and a marker naming a file that is not there", () => {
    assert.deepStrictEqual(sync("```ts\nconst x = 1\n```\n", readFile).problems, [
      'line 1: a ts block without a "<!-- sample: FILE -->" line before it',
    ])
    assert.deepStrictEqual(sync("<!-- sample: b.ts -->\n```ts\n```\n", readFile).problems, [
      "line 2: b.ts does not exist",
    ])
  })

  it("finds links and citations that lead nowhere", () => {
    const readme = join(root, "README.md")
    assert.deepStrictEqual(
      deadLinks("[p](docs/protocol.md#limits) [w](https://x.y) [m](docs/missing.md)", readme),
      ["docs/missing.md"],
    )
    assert.deepStrictEqual(deadCitations("// as docs/protocol.md says, not as PROTOCOL.md did", root), [
      "PROTOCOL.md",
    ])
  })
})
