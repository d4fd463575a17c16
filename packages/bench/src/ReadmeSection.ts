/**
 * Writes generated text into packages/bench/README.md between `<!-- bench:NAME -->` and
 * `<!-- /bench:NAME -->`, so what the README says is what a script measured.
 */
import * as fs from "node:fs"

/** Replaces the section's text; false (and the README untouched) when its markers are missing. */
export const write = (name: string, lines: ReadonlyArray<string>): boolean => {
  const readme = new URL("../README.md", import.meta.url)
  const text = fs.readFileSync(readme, "utf8")
  const [open, close] = [`<!-- bench:${name} -->`, `<!-- /bench:${name} -->`]
  const from = text.indexOf(open)
  const to = text.indexOf(close)
  if (from < 0 || to < from) return false
  fs.writeFileSync(readme, `${text.slice(0, from + open.length)}\n${lines.join("\n")}\n${text.slice(to)}`)
  return true
}
