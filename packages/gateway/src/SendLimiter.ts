/**
 * The gateway allows 120 sends per 60 s per connection; one more and the server closes
 * with 4008. Every send on a connection is recorded in one sliding window. Commands wait
 * while the window holds `limit - reserve` sends; heartbeats (and Identify/Resume) never
 * wait, and the reserve is sized so they always fit: one per interval over the window,
 * plus room for the handshake and one server-requested beat.
 */
import { Clock, Effect } from "effect"
import * as Protocol from "./Protocol.ts"

export interface SendLimiter {
  /** Records a send that must not wait (heartbeat, handshake). */
  readonly record: Effect.Effect<void>
  /** Waits until a command may be sent, then records it. */
  readonly acquire: Effect.Effect<void>
  /** How many commands the window admits. */
  readonly commandBudget: number
}

export const reserveFor = (
  heartbeatIntervalMillis: number,
  windowMillis: number = Protocol.sendLimit.windowMillis,
) => Math.ceil(windowMillis / heartbeatIntervalMillis) + 2

export const make = (options: {
  readonly heartbeatIntervalMillis: number
  readonly limit?: number
  readonly windowMillis?: number
}): SendLimiter => {
  const limit: number = options.limit ?? Protocol.sendLimit.commands
  const windowMillis: number = options.windowMillis ?? Protocol.sendLimit.windowMillis
  const commandBudget = Math.max(1, limit - reserveFor(options.heartbeatIntervalMillis, windowMillis))
  // Send times inside the window, oldest first. Owned by one connection.
  const sent: Array<number> = []

  const prune = (now: number) => {
    while (sent.length > 0 && sent[0]! <= now - windowMillis) sent.shift()
  }
  const record = Effect.map(Clock.currentTimeMillis, (now) => {
    prune(now)
    sent.push(now)
  })
  const acquire: Effect.Effect<void> = Effect.gen(function* () {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      prune(now)
      if (sent.length < commandBudget) {
        sent.push(now)
        return
      }
      // The oldest send leaves the window at sent[count - budget] + window.
      yield* Effect.sleep(sent[sent.length - commandBudget]! + windowMillis - now)
    }
  })
  return { record, acquire, commandBudget }
}
