/**
 * The gateway allows 120 sends per 60 s per connection; one more and the server closes
 * with 4008. Every send on a connection is recorded in one sliding window, with a margin:
 * the window admits `budget` (110) sends, and a send leaves it only `slack` (5 s) after the
 * 60 s, counted from when its write completed. The server counts on its own clock, at
 * arrival: latency that varies from one send to the next, or a clock running apart, must
 * never let it see more than 120 in any 60 s.
 *
 * Heartbeats (and Identify/Resume) never wait: a reserve of the budget is kept for them,
 * one beat per interval over the window plus room for the handshake, capped at half the
 * budget so that commands always move, even when a server asks for absurdly short
 * intervals (twilight caps its reserve likewise). Commands wait while the window holds
 * `budget - reserve` commands, or `budget` sends of any kind. A beat the server asks for (op 1) takes a command's place, and
 * only when one is free at once (`tryAcquire`).
 */
import { Clock, Effect } from "effect"
import * as Protocol from "./Protocol.ts"

/**
 * Each send holds a place in the window from the moment it is admitted (`record`,
 * `acquire`, `tryAcquire`) and is dated by `written` once its write completed: the later
 * instant, so the place is held longer rather than shorter.
 */
export interface SendLimiter {
  /** Admits a send that must not wait (heartbeat, handshake). */
  readonly record: Effect.Effect<void>
  /** Waits until a command may be sent, then admits it. */
  readonly acquire: Effect.Effect<void>
  /** Admits a send if one could go now without waiting; false (nothing admitted) if not. */
  readonly tryAcquire: Effect.Effect<boolean>
  /** Dates an admitted send: its write completed (or failed) now. */
  readonly written: Effect.Effect<void>
  /**
   * `record` and `written` at a time the caller read from its clock: plain calls, for a
   * heartbeat's send, which then costs no effect of its own.
   */
  readonly recordAt: (now: number) => void
  readonly writtenAt: (now: number) => void
  /** How many commands the window admits. */
  readonly commandBudget: number
}

/** Sends the window admits: the server's 120, less a margin. */
export const defaultBudget = Protocol.sendLimit.commands - 10

/** How much longer than the server's 60 s a send is held in the window. */
export const defaultSlackMillis = 5_000

/** Sends kept for heartbeats and the handshake, out of `budget`. */
export const reserveFor = (
  heartbeatIntervalMillis: number,
  windowMillis: number = Protocol.sendLimit.windowMillis + defaultSlackMillis,
  budget: number = defaultBudget,
): number =>
  Math.min(Math.ceil(windowMillis / Math.max(1, heartbeatIntervalMillis)) + 2, Math.floor(budget / 2))

/** What a limiter reports, to its shard's metrics; both synchronous and cheap. */
export interface SendRecorder {
  /** A command was admitted after waiting this long (0 when it went at once). */
  readonly waited: (millis: number) => void
  /** A send that may be skipped was refused: the window had no room (`tryAcquire` false). */
  readonly refused: () => void
}

export const make = (options: {
  readonly heartbeatIntervalMillis: number
  readonly recorder?: SendRecorder | undefined
  /** Sends admitted per window. Default `defaultBudget` (110). */
  readonly budget?: number
  /** How long a send stays in the window. Default 60 s plus `defaultSlackMillis`. */
  readonly windowMillis?: number
}): SendLimiter => {
  const budget = options.budget ?? defaultBudget
  const windowMillis = options.windowMillis ?? Protocol.sendLimit.windowMillis + defaultSlackMillis
  const commandBudget = budget - reserveFor(options.heartbeatIntervalMillis, windowMillis, budget)
  // Every send in the window, in admission order, dated when its write completed (one not
  // yet written counts as +Infinity: it holds its place until dated). Dates only grow, so
  // the order is ascending. Commands are also counted apart: they wait on both their own
  // budget and the whole window, so heartbeats beyond the reserve (a 1 s interval) slow
  // commands down instead of starving them or pushing the total past the budget.
  const sent: Array<{ at: number; readonly command: boolean }> = []
  let commands = 0
  let firstPending = 0 // index of the first send not yet written
  const pending = Number.POSITIVE_INFINITY

  const prune = (now: number) => {
    let gone = 0
    while (gone < sent.length && sent[gone]!.at <= now - windowMillis) {
      if (sent[gone]!.command) commands--
      gone++
    }
    if (gone > 0) {
      sent.splice(0, gone)
      firstPending -= gone
    }
  }
  const hasRoom = (now: number) => {
    prune(now)
    return commands < commandBudget && sent.length < budget
  }
  const admit = (command: boolean) => {
    sent.push({ at: pending, command })
    if (command) commands++
  }
  /** When a command could next be admitted: the send whose leaving makes room, plus the window. */
  const nextRoomAt = (): number => {
    if (sent.length >= budget) return sent[sent.length - budget]!.at + windowMillis
    let excess = commands - commandBudget // commands that must leave first, oldest first
    for (const entry of sent) {
      if (entry.command && excess-- === 0) return entry.at + windowMillis
    }
    return pending
  }

  const recordAt = (now: number) => {
    prune(now)
    admit(false)
  }
  const writtenAt = (now: number) => {
    if (firstPending >= sent.length) return
    sent[firstPending]!.at = now
    firstPending++
  }
  const record = Effect.map(Clock.currentTimeMillis, recordAt)
  const acquire: Effect.Effect<void> = Effect.gen(function* () {
    const askedAt = yield* Clock.currentTimeMillis
    while (true) {
      const now = yield* Clock.currentTimeMillis
      if (hasRoom(now)) {
        options.recorder?.waited(now - askedAt)
        return admit(true)
      }
      // One still being written is looked at again a second later.
      const frees = nextRoomAt()
      yield* Effect.sleep(frees === pending ? 1_000 : Math.max(1, frees - now))
    }
  })
  const tryAcquire = Effect.map(Clock.currentTimeMillis, (now) => {
    if (!hasRoom(now)) {
      options.recorder?.refused()
      return false
    }
    admit(true)
    return true
  })
  const written = Effect.map(Clock.currentTimeMillis, writtenAt)
  return { record, acquire, tryAcquire, written, recordAt, writtenAt, commandBudget }
}
