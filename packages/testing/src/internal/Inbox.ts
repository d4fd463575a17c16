/**
 * A mailbox between Node event callbacks (which cannot run Effects) and the one fiber that
 * consumes them: `push` is synchronous and may be called from any listener, `take` waits.
 * Order is kept, which is the point: a socket's events must be handled in arrival order.
 */
import { Effect } from "effect"

export interface Inbox<A> {
  readonly push: (item: A) => void
  /** After `close`, pushes are ignored and `take` drains what is left, then yields `undefined`. */
  readonly close: () => void
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
      if (closed) return
      items.push(item)
      wake()
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
    size: () => items.length,
  }
}
