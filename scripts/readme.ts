/**
 * README samples are files that run as tests. In a README, a TypeScript code block follows a
 * marker naming its file, relative to the README:
 *
 *     <!-- sample: packages/testing/test/readme/CountMessages.test.ts -->
 *
 * and holds that file, byte for byte, imports included. `node scripts/readme.ts` reports every
 * block that differs from its file or has no marker, and every relative link of the READMEs
 * and `docs/` and every `….md` the packages' code cites that leads nowhere (the test command runs it
 * through `scripts/test/readme.test.ts`); `--write` copies the sample files into the READMEs.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const marker = /^<!-- sample: (\S+) -->$/
const fence = /^```(\S*)$/
const codeLanguages = new Set(["ts", "tsx", "typescript", "js", "javascript"])

/** The root README and each package's. */
export const readmes = (root: string): Array<string> => {
  const packages = join(root, "packages")
  return [
    join(root, "README.md"),
    ...readdirSync(packages)
      .map((name) => join(packages, name, "README.md"))
      .filter(existsSync),
  ]
}

/** Brings each sample block of `markdown` in line with its file; lists what was not (line numbers 1-based). */
export const sync = (
  markdown: string,
  readFile: (path: string) => string | undefined,
): { readonly text: string; readonly problems: Array<string> } => {
  const lines = markdown.split("\n")
  const out: Array<string> = []
  const problems: Array<string> = []
  for (let i = 0; i < lines.length; i++) {
    const open = fence.exec(lines[i]!)
    if (open === null) {
      out.push(lines[i]!)
      continue
    }
    let close = i + 1
    while (close < lines.length && lines[close] !== "```") close++
    if (close === lines.length) {
      problems.push(`line ${i + 1}: a code block that never ends`)
      out.push(...lines.slice(i))
      break
    }
    const body = lines.slice(i + 1, close).join("\n")
    const named = i > 0 ? marker.exec(lines[i - 1]!) : null
    let replacement = body
    if (named !== null) {
      const file = readFile(named[1]!)
      if (file === undefined) problems.push(`line ${i + 1}: ${named[1]} does not exist`)
      else {
        replacement = file.replace(/\n$/, "")
        if (replacement !== body) problems.push(`line ${i + 1}: differs from ${named[1]}`)
      }
    } else if (codeLanguages.has(open[1]!)) {
      problems.push(`line ${i + 1}: a ${open[1]} block without a "<!-- sample: FILE -->" line before it`)
    }
    out.push(lines[i]!, ...(replacement === "" ? [] : replacement.split("\n")), "```")
    i = close
  }
  return { text: out.join("\n"), problems }
}

const readBeside = (readme: string) => (path: string) => {
  const file = join(dirname(readme), path)
  return existsSync(file) ? readFileSync(file, "utf8") : undefined
}

const filesUnder = (dir: string, suffix: string): Array<string> =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true, encoding: "utf8" })
        .filter((name) => name.endsWith(suffix) && !name.split(/[\\/]/).includes("node_modules"))
        .map((name) => join(dir, name))
    : []

/** Relative link targets in `markdown` (`[text](target)`) that do not exist beside `file`. */
export const deadLinks = (markdown: string, file: string): Array<string> =>
  [...markdown.matchAll(/\]\(([^)\s#]+)(?:#[^)\s]*)?\)/g)]
    .map((match) => match[1]!)
    .filter((target) => !/^[a-z]+:/.test(target) && !existsSync(join(dirname(file), target)))

/** Paths like `docs/protocol.md` cited in `text` that do not exist under `root`. */
export const deadCitations = (text: string, root: string): Array<string> =>
  [...text.matchAll(/(?<![\w./-])((?:[\w-]+\/)*[\w-]+\.md)\b/g)]
    .map((match) => match[1]!)
    .filter((path) => !existsSync(join(root, path)))

/** Every problem of every README and doc, each prefixed with its file's path. */
export const check = (root: string): Array<string> => {
  const docs = [...readmes(root), ...filesUnder(join(root, "docs"), ".md")]
  const code = readdirSync(join(root, "packages")).flatMap((name) =>
    ["src", "test", "examples"].flatMap((dir) => filesUnder(join(root, "packages", name, dir), ".ts")),
  )
  return [
    ...readmes(root).flatMap((readme) =>
      sync(readFileSync(readme, "utf8"), readBeside(readme)).problems.map(
        (problem) => `${relative(root, readme)} ${problem}`,
      ),
    ),
    ...docs.flatMap((doc) =>
      deadLinks(readFileSync(doc, "utf8"), doc).map(
        (target) => `${relative(root, doc)} links to ${target}: no such file`,
      ),
    ),
    ...code.flatMap((file) =>
      deadCitations(readFileSync(file, "utf8"), root).map(
        (path) => `${relative(root, file)} cites ${path}: no such file`,
      ),
    ),
  ]
}

/** Copies every sample file into its README block; returns the problems a copy cannot fix. */
export const write = (root: string): Array<string> => {
  for (const readme of readmes(root)) {
    const before = readFileSync(readme, "utf8")
    const { text } = sync(before, readBeside(readme))
    if (text !== before) writeFileSync(readme, text)
  }
  return check(root)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..")
  const problems = process.argv.includes("--write") ? write(root) : check(root)
  for (const problem of problems) console.error(problem)
  if (problems.length > 0) {
    console.error("README samples: `sh scripts/dev.sh readme` copies the sample files into the READMEs")
    process.exitCode = 1
  }
}
