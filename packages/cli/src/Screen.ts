/**
 * The terminal output of the app. In a terminal, a status block stays at the bottom and
 * is redrawn in place while log lines scroll above it. Piped (or with NO_COLOR / TERM=dumb),
 * there are no escape codes: log lines as they come, and a status line only when a shard's
 * status changes.
 */
import { Effect } from "effect"

export interface Screen {
  /** A line that stays (scrolls up above the status block). */
  readonly log: (line: string) => Effect.Effect<void>
  /** The current status block, one line per shard. */
  readonly status: (lines: ReadonlyArray<string>) => Effect.Effect<void>
  /** Leaves the last status block in place and stops redrawing. */
  readonly done: Effect.Effect<void>
}

export interface Output {
  readonly write: (text: string) => void
  readonly isTTY: boolean
  /** The terminal's width now (it can be resized), if known. */
  readonly columns?: (() => number | undefined) | undefined
}

export const stdout: Output = {
  write: (text) => void process.stdout.write(text),
  isTTY:
    process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined && process.env["TERM"] !== "dumb",
  columns: () => process.stdout.columns,
}

const clearBlock = (rows: number) => (rows > 0 ? `\x1b[${rows}F\x1b[0J` : "")

/** A CSI escape (colour, cursor move), from ESC's code: the linter refuses ESC in a regex literal. */
const escapeCode = `${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`
const escapeAt = new RegExp(escapeCode, "y")
const escapes = new RegExp(escapeCode, "g")

/** The text a terminal shows: `text` without its escape codes. */
export const visible = (text: string): string => text.replace(escapes, "")

/**
 * Cuts `line` to fewer than `columns` visible characters (escape codes kept, colours reset
 * after a cut): a block line that wrapped would take two screen rows, and moving up by
 * lines would leave stale rows behind. The last column stays free, since some terminals
 * wrap on writing it.
 */
export const fit = (line: string, columns: number | undefined): string => {
  if (columns === undefined || columns < 2) return line
  const room = columns - 1
  let shown = 0
  let i = 0
  while (i < line.length) {
    escapeAt.lastIndex = i
    const code = escapeAt.exec(line)
    if (code !== null) {
      i += code[0].length
      continue
    }
    const char = String.fromCodePoint(line.codePointAt(i)!)
    if (shown === room) return `${line.slice(0, i)}\x1b[0m`
    shown++
    i += char.length
  }
  return line
}

export const make = (out: Output = stdout): Screen => {
  if (out.isTTY) {
    let block: ReadonlyArray<string> = []
    /** Screen rows the block on screen takes: one per line, since each is fitted to the width. */
    let drawn = 0
    let finished = false
    const draw = (prefix: string) => {
      const columns = out.columns?.()
      out.write(`${clearBlock(drawn)}${prefix}${block.map((l) => `${fit(l, columns)}\n`).join("")}`)
      drawn = block.length
    }
    return {
      log: (line) => Effect.sync(() => draw(`${line}\n`)),
      status: (lines) =>
        Effect.sync(() => {
          if (finished) return
          block = lines
          draw("")
        }),
      // The last block stays where it is; later lines print below it, nothing redraws it.
      done: Effect.sync(() => {
        finished = true
        drawn = 0
        block = []
      }),
    }
  }
  // Piped: only what changed, so a log file reads as a story.
  let last: ReadonlyArray<string> = []
  return {
    log: (line) => Effect.sync(() => out.write(`${line}\n`)),
    status: (lines) =>
      Effect.sync(() => {
        for (let i = 0; i < lines.length; i++) if (lines[i] !== last[i]) out.write(`  ${lines[i]}\n`)
        last = lines
      }),
    done: Effect.void,
  }
}

/** Bold / dim / colours in a terminal, plain text otherwise. */
export const style = (out: Output = stdout) => {
  const wrap = (open: number, close: number) => (text: string) =>
    out.isTTY ? `\x1b[${open}m${text}\x1b[${close}m` : text
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    red: wrap(31, 39),
    cyan: wrap(36, 39),
  }
}
