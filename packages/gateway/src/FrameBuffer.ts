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

export interface FrameBufferOptions {
  /** Called after each take: a transport resumes a paused socket here. */
  readonly onTake?: (() => void) | undefined
  /**
   * Wake the waiting reader once the current callback is done (a microtask), not inside the
   * `push`: for sockets that emit every frame of one read synchronously, which then make one
   * batch and one wake-up. Default false: a frame is taken at once (what `TestClock` tests on
   * the in-memory transport rely on).
   */
  readonly deferTake?: boolean | undefined
}

export const make = (options?: FrameBufferOptions): FrameBuffer => new Inbox(options)

type Waiter = (effect: Effect.Effect<ReadonlyArray<Frame>, EndReason>) => void

/** One per socket: its methods shared, so a connection holds three closures for it, not a dozen. */
class Inbox implements FrameBuffer {
  private frames: Array<Frame> = []
  private reason: EndReason | undefined
  private waiter: Waiter | undefined
  private wakeQueued = false
  private readonly onTake: (() => void) | undefined
  private readonly deferTake: boolean
  // The batch is taken when the reader runs, not when it is woken; a resumed fiber runs at
  // once, inside `wake`. With `deferTake` the wake waits for a microtask, so the frames a
  // socket emits in one go (one TCP read often holds many messages) join one batch, and the
  // reader runs once for them.
  private readonly takeNow: Effect.Effect<ReadonlyArray<Frame>, EndReason>
  private readonly wakeAfterCallback: () => void
  readonly take: Effect.Effect<ReadonlyArray<Frame>, EndReason>

  constructor(options: FrameBufferOptions | undefined) {
    this.onTake = options?.onTake
    this.deferTake = options?.deferTake ?? false
    this.takeNow = Effect.suspend(() =>
      this.frames.length > 0 ? Effect.succeed(this.takeAll()) : Effect.fail(this.reason!),
    )
    this.wakeAfterCallback = () => {
      this.wakeQueued = false
      this.wake()
    }
    this.take = Effect.callback((resume) => {
      if (this.frames.length > 0) return resume(Effect.succeed(this.takeAll()))
      if (this.reason !== undefined) return resume(Effect.fail(this.reason))
      this.waiter = resume
      return Effect.sync(() => {
        if (this.waiter === resume) this.waiter = undefined
      })
    })
  }

  private takeAll(): ReadonlyArray<Frame> {
    const batch = this.frames
    this.frames = []
    this.onTake?.()
    return batch
  }

  private wake(): void {
    const resume = this.waiter
    if (resume === undefined) return
    this.waiter = undefined
    resume(this.takeNow)
  }

  push(frame: Frame): void {
    if (this.reason !== undefined) return
    this.frames.push(frame)
    if (!this.deferTake) {
      this.wake()
      return
    }
    if (this.waiter === undefined || this.wakeQueued) return
    this.wakeQueued = true
    queueMicrotask(this.wakeAfterCallback)
  }

  end(why: EndReason): void {
    if (this.reason !== undefined) return
    this.reason = why
    this.wake()
  }

  pending(): number {
    return this.frames.length
  }

  ended(): boolean {
    return this.reason !== undefined
  }
}
