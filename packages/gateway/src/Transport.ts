/**
 * What a connection needs from a WebSocket, and nothing more. The core stays free of any
 * platform: `@vigil/gateway-node` provides the real one, `@vigil/gateway/testing` an in-memory one.
 */
import { Context, type Effect, Schema, type Scope } from "effect"
import type { TransportError } from "./GatewayError.ts"

/** The peer closed the socket: the code and reason of its close frame (1006 if none came). */
export class TransportClosed extends Schema.TaggedError<TransportClosed>()("TransportClosed", {
  code: Schema.Int,
  reason: Schema.String,
}) {}

export type Frame = string | Uint8Array

export interface TransportSocket {
  /**
   * The frames that have arrived since the last call, in order, at least one; waits when
   * there are none. Fails once the socket is closed or broken.
   */
  readonly receive: Effect.Effect<ReadonlyArray<Frame>, TransportClosed | TransportError>
  readonly send: (text: string) => Effect.Effect<void, TransportError>
  /**
   * `send` as a plain call, for a transport that hands a write over within the call (`ws`):
   * the error, or undefined once written. Optional; with it a heartbeat costs no effect of
   * its own.
   */
  readonly sendUnsafe?: ((text: string) => TransportError | undefined) | undefined
  /**
   * Sends a close frame with `code`, then tears the socket down at once: a half-open peer
   * may never answer, and nothing waits for it. A logout (1000) may wait briefly (bounded)
   * for the close handshake, so the server surely sees the session end. Safe to call more
   * than once. After it, `receive` still hands over the frames that arrived before the
   * socket ended, then fails: a retiring connection reads them (`Connection.StopMode`).
   * `handshake`: wait for the close handshake as a logout does, whatever the code (a cluster
   * reshard wave retires its old shard resumable and reads to the server's close frame).
   */
  readonly close: (
    code: number,
    reason?: string,
    options?: { readonly handshake?: boolean | undefined },
  ) => Effect.Effect<void>
}

export class GatewayTransport extends Context.Service<
  GatewayTransport,
  {
    /** Opens a socket to `url`; it lives until the scope closes (then it is torn down). */
    readonly connect: (url: string) => Effect.Effect<TransportSocket, TransportError, Scope.Scope>
  }
>()("@vigil/gateway/Transport") {}
