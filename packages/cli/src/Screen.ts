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
}

export const stdout: Output = {
  write: (text) => void process.stdout.write(text),
  isTTY:
    process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined && process.env["TERM"] !== "dumb",
}

const clearBlock = (lines: number) => (lines > 0 ? `\x1b[${lines}F\x1b[0J` : "")

export const make = (out: Output = stdout): Screen => {
  if (out.isTTY) {
    let block: ReadonlyArray<string> = []
    let drawn = 0
    let finished = false
    const draw = (prefix: string) => {
      out.write(`${clearBlock(drawn)}${prefix}${block.map((l) => `${l}\n`).join("")}`)
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
