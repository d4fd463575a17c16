/**
 * A mailbox between Node event callbacks (which cannot run Effects) and the one fiber that
 * consumes them: `push` is synchronous and may be called from any listener, `take` waits.
 * Order is kept, which is the point: a socket's events must be handled in arrival order.
 */
import { Effect } from "effect"

export interface Inbox<A> {
  /** Returns false when the inbox is closed and the item was not taken in. */
  readonly push: (item: A) => boolean
  /** After `close`, pushes are refused and `take` drains what is left, then yields `undefined`. */
  readonly close: () => void
  /** Empties the inbox, returning what was left in it. */
  readonly drain: () => Array<A>
  readonly take: Effect.Effect<A | undefined>
  readonly size: () => number
}

export const make = <A>(): Inbox<A> => {
  const items: Array<A> = []
  let closed = false
  let waiter: ((effect: Effect.Effect<A | undefined>) => void) | undefined

  const wake = () => {
    if (waiter === undefined) return
    const resume = waiter
    waiter = undefined
    resume(Effect.succeed(items.shift()))
  }

  return {
    push: (item) => {
      if (closed) return false
      items.push(item)
      wake()
      return true
    },
    close: () => {
      closed = true
      if (items.length === 0) wake()
    },
    take: Effect.callback((resume) => {
      if (items.length > 0 || closed) return resume(Effect.succeed(items.shift()))
      waiter = resume
      return Effect.sync(() => {
        if (waiter === resume) waiter = undefined
      })
    }),
    drain: () => items.splice(0),
    size: () => items.length,
  }
}
