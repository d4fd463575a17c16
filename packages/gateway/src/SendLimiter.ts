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
 * `budget - reserve` sends. A beat the server asks for (op 1) takes a command's place, and
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

export const make = (options: {
  readonly heartbeatIntervalMillis: number
  /** Sends admitted per window. Default `defaultBudget` (110). */
  readonly budget?: number
  /** How long a send stays in the window. Default 60 s plus `defaultSlackMillis`. */
  readonly windowMillis?: number
}): SendLimiter => {
  const budget = options.budget ?? defaultBudget
  const windowMillis = options.windowMillis ?? Protocol.sendLimit.windowMillis + defaultSlackMillis
  const commandBudget = budget - reserveFor(options.heartbeatIntervalMillis, windowMillis, budget)
  // When each send in the window completed, ascending; an admitted send not yet written
  // counts as +Infinity (it holds its place until dated). Owned by one connection.
  let sent: Array<number> = []
  const pending = Number.POSITIVE_INFINITY

  const prune = (now: number) => {
    if (sent.length > 0 && sent[0]! <= now - windowMillis) sent = sent.filter((at) => at > now - windowMillis)
  }
  const hasRoom = (now: number) => {
    prune(now)
    return sent.length < commandBudget
  }
  const admit = () => void sent.push(pending)

  const record = Effect.map(Clock.currentTimeMillis, (now) => {
    prune(now)
    admit()
  })
  const acquire: Effect.Effect<void> = Effect.gen(function* () {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      if (hasRoom(now)) return admit()
      // The send that makes room leaves the window at sent[count - budget] + window; one
      // still being written is looked at again a second later.
      const frees = sent[sent.length - commandBudget]! + windowMillis
      yield* Effect.sleep(frees === pending ? 1_000 : Math.max(1, frees - now))
    }
  })
  const tryAcquire = Effect.map(Clock.currentTimeMillis, (now) => {
    if (!hasRoom(now)) return false
    admit()
    return true
  })
  const written = Effect.map(Clock.currentTimeMillis, (now) => {
    const index = sent.indexOf(pending)
    if (index < 0) return
    sent[index] = now
    sent.sort((a, b) => a - b)
  })
  return { record, acquire, tryAcquire, written, commandBudget }
}
