/**
 * The inbox between a socket's event callbacks and the connection's reader fiber: frames
 * are pushed as they arrive and taken in batches (with `deferTake`, one wake-up per socket
 * read, not per frame), until the socket ends with its reason. For transport implementations.
 */
import { Effect } from "effect"
import type { TransportError } from "./GatewayError.ts"
import type { Frame, TransportClosed } from "./Transport.ts"

export type EndReason = TransportClosed | TransportError

export interface FrameBuffer {
  /** Adds a frame; ignored once the buffer has ended. */
  readonly push: (frame: Frame) => void
  /** Ends the stream: frames already buffered are still delivered, then `reason`. */
  readonly end: (reason: EndReason) => void
  /** The buffered frames, waiting for at least one; fails with the end reason. */
  readonly take: Effect.Effect<ReadonlyArray<Frame>, EndReason>
  /** How many frames wait to be taken. */
  readonly pending: () => number
  readonly ended: () => boolean
}

export const make = (options?: {
  /** Called after each take: a transport resumes a paused socket here. */
  readonly onTake?: (() => void) | undefined
  /**
   * Wake the waiting reader once the current callback is done (a microtask), not inside the
   * `push`: for sockets that emit every frame of one read synchronously, which then make one
   * batch and one wake-up. Default false: a frame is taken at once (what `TestClock` tests on
   * the in-memory transport rely on).
   */
  readonly deferTake?: boolean | undefined
}): FrameBuffer => {
  let frames: Array<Frame> = []
  let reason: EndReason | undefined
  let waiter: ((effect: Effect.Effect<ReadonlyArray<Frame>, EndReason>) => void) | undefined

  const takeAll = (): ReadonlyArray<Frame> => {
    const batch = frames
    frames = []
    options?.onTake?.()
    return batch
  }
  // The batch is taken when the reader runs, not when it is woken; a resumed fiber runs at
  // once, inside `wake`. With `deferTake` the wake waits for a microtask, so the frames a
  // socket emits in one go (one TCP read often holds many messages) join one batch, and the
  // reader runs once for them.
  const takeNow = Effect.suspend(() => (frames.length > 0 ? Effect.succeed(takeAll()) : Effect.fail(reason!)))
  const wake = () => {
    if (waiter === undefined) return
    const resume = waiter
    waiter = undefined
    resume(takeNow)
  }
  let wakeQueued = false
  const wakeAfterCallback = () => {
    wakeQueued = false
    wake()
  }
  const wakeSoon = options?.deferTake
    ? () => {
        if (waiter === undefined || wakeQueued) return
        wakeQueued = true
        queueMicrotask(wakeAfterCallback)
      }
    : wake

  return {
    push: (frame) => {
      if (reason !== undefined) return
      frames.push(frame)
      wakeSoon()
    },
    end: (why) => {
      if (reason !== undefined) return
      reason = why
      wake()
    },
    take: Effect.callback((resume) => {
      if (frames.length > 0) return resume(Effect.succeed(takeAll()))
      if (reason !== undefined) return resume(Effect.fail(reason))
      waiter = resume
      return Effect.sync(() => {
        if (waiter === resume) waiter = undefined
      })
    }),
    pending: () => frames.length,
    ended: () => reason !== undefined,
  }
}
