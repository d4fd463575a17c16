/**
 * An in-memory `GatewayTransport`: no sockets, no real time. A test plays the server side
 * of each connection by hand (or with `autoHandshake`), so `TestClock` decides every
 * timing exactly. Every frame the client sends is recorded, including any attempt after
 * the connection was closed: the invariant "no heartbeat after the scope closed" is read
 * straight off `lateSends`.
 */

import { Clock, Context, Effect, Layer, Queue, type Scope } from "effect"
import * as FrameBuffer from "../FrameBuffer.ts"
import * as GatewayError from "../GatewayError.ts"
import * as Transport from "../Transport.ts"

export interface SentFrame {
  readonly at: number
  readonly text: string
  readonly op: number | undefined
}

/** The server's end of one connection. */
export interface MemoryPeer {
  readonly id: number
  readonly url: string
  /** Frames the client wrote, in order. */
  readonly sent: ReadonlyArray<SentFrame>
  /** Waits for the client's next frame (for a server script); fails once closed. */
  readonly nextFrame: Effect.Effect<SentFrame, FrameBuffer.EndReason>
  /** Writes the client attempted after the connection closed (must stay empty). */
  readonly lateSends: ReadonlyArray<SentFrame>
  /** The close code the client sent, if it closed. */
  readonly clientCloseCode: () => number | undefined
  readonly isOpen: () => boolean
  /** Server → client. */
  readonly send: (payload: unknown) => Effect.Effect<void>
  readonly sendRaw: (frame: Transport.Frame) => Effect.Effect<void>
  /** The server closes with a code (the client sees `TransportClosed`). */
  readonly close: (code: number, reason?: string) => Effect.Effect<void>
  /** The link drops without a close frame (1006). */
  readonly drop: Effect.Effect<void>
}

export interface MemoryGateway {
  /** Waits for the client's next connection. */
  readonly accept: Effect.Effect<MemoryPeer>
  /** Every connection so far, oldest first. */
  readonly peers: () => ReadonlyArray<MemoryPeer>
  /** Connections open right now. */
  readonly openCount: () => number
  /** The most connections ever open at the same time. */
  readonly maxOpenCount: () => number
  /** Clock times of every `connect` call, failed ones included. */
  readonly connectAttempts: () => ReadonlyArray<number>
  /** Make the next `connect` fail (e.g. the network is down); each entry is used once. */
  readonly failNextConnect: (detail: string) => Effect.Effect<void>
}

export class MemoryTransport extends Context.Service<MemoryTransport, MemoryGateway>()(
  "@vigil/gateway/testing/MemoryTransport",
) {
  /** Provides both the client's `GatewayTransport` and the test's `MemoryTransport`. */
  static readonly layer: Layer.Layer<MemoryTransport | Transport.GatewayTransport> = Layer.unwrap(
    Effect.gen(function* () {
      const { gateway, transport } = yield* make
      return Layer.merge(
        Layer.succeed(MemoryTransport)(gateway),
        Layer.succeed(Transport.GatewayTransport)(transport),
      )
    }),
  )
}

const opOf = (text: string): number | undefined => {
  const match = /"op"\s*:\s*(\d+)/.exec(text)
  return match ? Number(match[1]) : undefined
}

export const make = Effect.gen(function* () {
  const incoming = yield* Queue.unbounded<MemoryPeer>()
  const peers: Array<MemoryPeer> = []
  const connectFailures: Array<string> = []
  const attempts: Array<number> = []
  let nextId = 1
  let open = 0
  let maxOpen = 0

  const connect = (
    url: string,
  ): Effect.Effect<Transport.TransportSocket, GatewayError.TransportError, Scope.Scope> =>
    Effect.gen(function* () {
      attempts.push(yield* Clock.currentTimeMillis)
      const failure = connectFailures.shift()
      if (failure !== undefined)
        return yield* new GatewayError.TransportError({ stage: "open", detail: failure })
      const inbox = FrameBuffer.make()
      const unread: Array<SentFrame> = [] // client frames a server script has not read yet
      const unreadSignal = FrameBuffer.make()
      // Signals may be stale (their frame was already read): then wait for the next one.
      const nextFrame: Effect.Effect<SentFrame, FrameBuffer.EndReason> = Effect.suspend(() => {
        const frame = unread.shift()
        return frame ? Effect.succeed(frame) : Effect.flatMap(unreadSignal.take, () => nextFrame)
      })
      const sent: Array<SentFrame> = []
      const lateSends: Array<SentFrame> = []
      let isOpen = true
      let clientCloseCode: number | undefined
      open++
      maxOpen = Math.max(maxOpen, open)
      const shut = (reason: FrameBuffer.EndReason) => {
        if (!isOpen) return
        isOpen = false
        open--
        inbox.end(reason)
        unreadSignal.end(reason)
      }

      const peer: MemoryPeer = {
        id: nextId++,
        url,
        sent,
        nextFrame,
        lateSends,
        clientCloseCode: () => clientCloseCode,
        isOpen: () => isOpen,
        send: (payload) => Effect.sync(() => inbox.push(JSON.stringify(payload))),
        sendRaw: (frame) => Effect.sync(() => inbox.push(frame)),
        close: (code, reason = "") =>
          Effect.sync(() => shut(new Transport.TransportClosed({ code, reason }))),
        drop: Effect.sync(() => shut(new Transport.TransportClosed({ code: 1006, reason: "" }))),
      }
      peers.push(peer)

      // Like `ws`, a write is handed over within the call: `send` is a plain call too.
      const clock = yield* Clock.Clock
      const sendUnsafe = (text: string): GatewayError.TransportError | undefined => {
        const frame = { at: clock.currentTimeMillisUnsafe(), text, op: opOf(text) }
        if (!isOpen) {
          lateSends.push(frame)
          return new GatewayError.TransportError({ stage: "write", detail: "socket is closed" })
        }
        sent.push(frame)
        unread.push(frame)
        unreadSignal.push(text)
        return undefined
      }
      const socket: Transport.TransportSocket = {
        receive: inbox.take,
        send: (text) =>
          Effect.suspend(() => {
            const error = sendUnsafe(text)
            return error === undefined ? Effect.void : Effect.fail(error)
          }),
        sendUnsafe,
        close: (code) =>
          Effect.sync(() => {
            if (isOpen && clientCloseCode === undefined) clientCloseCode = code
            shut(new Transport.TransportClosed({ code, reason: "closed by client" }))
          }),
      }
      // Like the real transport: the scope's end tears the socket down whatever happened.
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => shut(new Transport.TransportClosed({ code: 1006, reason: "" }))),
      )
      yield* Queue.offer(incoming, peer)
      return socket
    })

  const gateway: MemoryGateway = {
    accept: Queue.take(incoming),
    peers: () => peers,
    openCount: () => open,
    maxOpenCount: () => maxOpen,
    connectAttempts: () => attempts,
    failNextConnect: (detail) => Effect.sync(() => void connectFailures.push(detail)),
  }
  return { gateway, transport: Transport.GatewayTransport.of({ connect }) }
})
