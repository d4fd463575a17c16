/**
 * The WebSocket transport on Node: `ws` (as re-exported by `@effect/platform-node`'s
 * NodeWS), wrapped so the connection's scope owns the socket. We use `ws` directly rather
 * than `effect/socket` because the gateway needs two things that abstraction hides: closing
 * with our own code and then tearing the TCP link down at once (`terminate`), and raw
 * frames without a per-message re-encoding for its buffer accounting.
 */
import { WebSocket } from "@effect/platform-node/NodeWS"
import { FrameBuffer, GatewayError, Transport } from "@vigil/gateway"
import { Duration, Effect, Layer, type Scope } from "effect"

export interface NodeTransportOptions {
  /** How long the WebSocket handshake may take. Default 15 s. */
  readonly openTimeout?: Duration.Input | undefined
  /** Largest single WebSocket message accepted by `ws`. Default 64 MiB. */
  readonly maxFrameBytes?: number | undefined
  /** Frames buffered before the socket is paused (TCP back-pressure). Default 512. */
  readonly highWaterFrames?: number | undefined
}

const OPEN = 1
const CLOSING = 2
const closeTimeoutMillis = 1_000

/**
 * A logout (1000) must reach the server, or the session stays resumable there. Torn down at
 * once, a socket with unread data from the server is reset (RST) and the server may drop the
 * close frame unread; so the close handshake runs to its end here (reading resumed so the
 * server's close frame is seen, and not paused again however many frames come before it: the
 * reader may be slow to take them), bounded by `closeTimeoutMillis`, then the link goes.
 * Asked for (`handshake`), a resumable close does the same: every frame before the server's
 * close frame is read.
 */
const closeGracefully = (
  ws: WebSocket,
  code: number,
  reason: string | undefined,
  resume: () => void,
): Effect.Effect<void> =>
  Effect.callback<void>((done) => {
    const onClose = () => done(Effect.void)
    ws.once("close", onClose)
    resume()
    ws.close(code, reason)
    return Effect.sync(() => ws.off("close", onClose))
  }).pipe(
    Effect.timeoutOrElse({ duration: closeTimeoutMillis, orElse: () => Effect.void }),
    Effect.ensuring(Effect.sync(() => ws.terminate())),
  )

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export const make = (options: NodeTransportOptions = {}): Transport.GatewayTransport["Service"] => {
  const openTimeout = options.openTimeout ?? Duration.seconds(15)
  const maxPayload = options.maxFrameBytes ?? 64 * 1024 * 1024
  const highWater = options.highWaterFrames ?? 512
  const clientOptions = {
    perMessageDeflate: false,
    maxPayload,
    // How long `ws` waits for the TCP close after a close frame (its default: 30 s). A peer
    // that sent its close frame and holds TCP open gets a second; then 'close' brings the
    // code received. (An option of the `ws` this package requires; its types lag behind.)
    closeTimeout: closeTimeoutMillis,
  } as WebSocket.ClientOptions

  const connect = (
    url: string,
  ): Effect.Effect<Transport.TransportSocket, GatewayError.TransportError, Scope.Scope> =>
    Effect.gen(function* () {
      const ws = yield* Effect.acquireRelease(
        Effect.try({
          try: () => new WebSocket(url, clientOptions),
          catch: (error) => new GatewayError.TransportError({ stage: "open", detail: describe(error) }),
        }),
        // Whatever happened, the scope's end leaves no socket and no listener behind. A
        // no-op error listener stays: a late error from a dying socket must not crash.
        (ws) =>
          Effect.sync(() => {
            ws.removeAllListeners()
            ws.on("error", () => {})
            ws.terminate()
          }),
      )
      let paused = false
      /** A close handshake under way: reads stay on (paused, the server's close frame never comes). */
      let closing = false
      const inbox = FrameBuffer.make({
        // `ws` emits every message of a TCP read synchronously: one batch for all of them.
        deferTake: true,
        onTake: () => {
          if (paused) {
            paused = false
            ws.resume()
          }
        },
      })
      let opened = false
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        inbox.push(isBinary ? data : data.toString("utf8"))
        if (!paused && !closing && inbox.pending() >= highWater) {
          paused = true
          ws.pause()
        }
      })
      ws.on("close", (code: number, reason: Buffer) => {
        inbox.end(new Transport.TransportClosed({ code, reason: reason.toString("utf8") }))
      })
      ws.on("error", (error: Error) => {
        inbox.end(
          new GatewayError.TransportError({ stage: opened ? "read" : "open", detail: describe(error) }),
        )
      })

      yield* Effect.callback<void, GatewayError.TransportError>((resume) => {
        // Whichever comes first removes all three: a socket that opened keeps no listener
        // (nor the fiber's continuation it holds) for a handshake long over.
        const done = (outcome: Effect.Effect<void, GatewayError.TransportError>) => {
          off()
          resume(outcome)
        }
        const onOpen = () => done(Effect.void)
        const onFail = (error: unknown) =>
          done(Effect.fail(new GatewayError.TransportError({ stage: "open", detail: describe(error) })))
        const onClose = (code: number) =>
          done(
            Effect.fail(
              new GatewayError.TransportError({ stage: "open", detail: "closed during handshake", code }),
            ),
          )
        const off = () => {
          ws.off("open", onOpen)
          ws.off("error", onFail)
          ws.off("close", onClose)
        }
        ws.once("open", onOpen)
        ws.once("error", onFail)
        ws.once("close", onClose)
        return Effect.sync(off)
      }).pipe(
        Effect.timeoutOrElse({
          duration: openTimeout,
          orElse: () =>
            Effect.fail(
              new GatewayError.TransportError({
                stage: "open",
                detail: `no handshake within ${Duration.toMillis(openTimeout)} ms`,
              }),
            ),
        }),
      )
      opened = true

      // `ws` hands the frame to the socket within the call: a send is a plain call.
      const sendUnsafe = (text: string): GatewayError.TransportError | undefined => {
        if (ws.readyState !== OPEN) {
          // Closing: the peer's close frame came (or the link failed), and `ws` waits for
          // a TCP close that a hostile peer may hold back. Tear the link down now: the
          // 'close' event then brings the code received, which is what the reader reports.
          if (ws.readyState === CLOSING) ws.terminate()
          return new GatewayError.TransportError({ stage: "write", detail: "socket is not open" })
        }
        ws.send(text)
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
        close: (code, reason, options) =>
          (code === 1000 || options?.handshake === true) && ws.readyState === OPEN
            ? closeGracefully(ws, code, reason, () => {
                closing = true
                if (paused) {
                  paused = false
                  ws.resume()
                }
              })
            : Effect.sync(() => {
                // The close frame is handed to the kernel synchronously; `terminate` then ends
                // the TCP link without waiting for an answer that a half-open peer never sends.
                if (ws.readyState === OPEN) ws.close(code, reason)
                ws.terminate()
              }),
      }
      return socket
    })

  return Transport.GatewayTransport.of({ connect })
}

export const layer = (options?: NodeTransportOptions): Layer.Layer<Transport.GatewayTransport> =>
  Layer.succeed(Transport.GatewayTransport)(make(options))
