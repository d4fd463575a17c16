/**
 * A lifecycle phase whose end is an event, not the end of an effect (the socket's connect
 * ends when Hello arrives, the handshake when READY/RESUMED does): a span started now and
 * ended at most once, by the event or by the attempt's exit, whichever comes first.
 */
import { Clock, Effect, Exit, Option } from "effect"
import type { ConnectionError, SessionStartLimitExhausted } from "../GatewayError.ts"

export interface Phase {
  readonly end: (exit?: Exit.Exit<unknown, unknown>) => void
}

export const start = (name: string, attributes: Record<string, unknown>): Effect.Effect<Phase> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const span = yield* Effect.makeSpan(name, { attributes })
    let open = true
    return {
      end: (exit = Exit.void) => {
        if (!open) return
        open = false
        span.end(clock.currentTimeNanosUnsafe(), exit)
      },
    }
  })

/**
 * How a connection ended, as span attributes: the error's tag and message, and the close code
 * and reason when the server gave them (sanitized, the token redacted, by the shard).
 */
export const outcomeAttributes = (
  exit: Exit.Exit<void, ConnectionError | SessionStartLimitExhausted>,
): Record<string, unknown> => {
  if (Exit.isSuccess(exit)) return { "vigil.outcome": "stopped" }
  const error = Option.getOrUndefined(Exit.findErrorOption(exit))
  if (error === undefined) return { "vigil.outcome": "interrupted" }
  return {
    "vigil.outcome": error._tag,
    "vigil.error.message": error.message,
    ...("code" in error && error.code !== undefined ? { "vigil.close.code": error.code } : {}),
    ...("reason" in error ? { "vigil.close.reason": error.reason } : {}),
  }
}
