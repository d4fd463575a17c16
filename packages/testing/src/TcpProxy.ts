/**
 * A TCP proxy on 127.0.0.1 between a client and a server, for the faults that live in the
 * network rather than in either peer: `cut` (both sides destroyed, no close frame, no FIN
 * handshake), `stall` (both sockets stay open but no byte moves: a dead NAT entry),
 * `slow` (latency and a bandwidth cap), and `resume`. Bytes are held, never lost, while
 * stalled or slowed, and delivered in order afterwards; time goes through `Clock`.
 */
import * as Net from "node:net"
import { Clock, Context, Duration, Effect, FiberSet, Latch, Layer, Schema, type Scope } from "effect"
import * as Inbox from "./internal/Inbox.ts"

export interface Options {
  /** Where to forward to; host defaults to 127.0.0.1. */
  readonly target: { readonly port: number; readonly host?: string | undefined }
}

export interface SlowOptions {
  /** Each chunk is delivered this long after it arrived. */
  readonly latency?: Duration.Input | undefined
  /** At most this many bytes per second in each direction. */
  readonly bytesPerSecond?: number | undefined
}

export interface Stats {
  /** Client connections accepted (refused ones not counted). */
  readonly accepted: number
  /** Client connections refused while `refuse(true)` was in effect. */
  readonly refused: number
  /** Links torn down by `cut`. */
  readonly cut: number
  readonly bytesToServer: number
  readonly bytesToClient: number
}

export interface TcpProxyService {
  readonly port: number
  /** `ws://127.0.0.1:<port>`, to hand to a WebSocket client (or to `FakeGateway.advertise`). */
  readonly url: string
  /** Destroys both sockets of every open link; returns how many links it cut. */
  readonly cut: Effect.Effect<number>
  /** Stops forwarding in both directions; sockets stay open, bytes wait. */
  readonly stall: Effect.Effect<void>
  /** Delays and/or throttles forwarding from now on (replaces any previous setting). */
  readonly slow: (options: SlowOptions) => Effect.Effect<void>
  /** Ends a stall and any slowing: held bytes are delivered, in order. */
  readonly resume: Effect.Effect<void>
  /** While true, new client connections are destroyed as soon as they are accepted. */
  readonly refuse: (refusing: boolean) => Effect.Effect<void>
  /** Links open right now. */
  readonly links: Effect.Effect<number>
  readonly stats: Effect.Effect<Stats>
}

export class TcpProxy extends Context.Service<TcpProxy, TcpProxyService>()("@vigil/testing/TcpProxy") {
  static readonly layer = (options: Options): Layer.Layer<TcpProxy, ProxyListenError> => layer(options)
}

export class ProxyListenError extends Schema.TaggedError<ProxyListenError>()("ProxyListenError", {
  detail: Schema.String,
}) {
  override get message() {
    return `TcpProxy cannot listen on 127.0.0.1: ${this.detail}`
  }
}

type Item = { readonly _tag: "Chunk"; readonly data: Buffer; readonly at: number } | { readonly _tag: "End" }

interface Link {
  readonly client: Net.Socket
  readonly server: Net.Socket
}

export const make = (options: Options): Effect.Effect<TcpProxyService, ProxyListenError, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const runFork = yield* FiberSet.makeRuntime<never>()
    const flowing = yield* Latch.make(true)
    let slowing: { readonly latencyMillis: number; readonly bytesPerSecond: number | undefined } | undefined
    let refusing = false
    const links = new Set<Link>()
    const stats = { accepted: 0, refused: 0, cut: 0, bytesToServer: 0, bytesToClient: 0 }

    /** Moves one direction's bytes, in order, honouring stall and slow at each chunk. */
    const forward = (
      inbox: Inbox.Inbox<Item>,
      to: Net.Socket,
      count: (bytes: number) => void,
    ): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (true) {
          const item = yield* inbox.take
          if (item === undefined) return
          yield* flowing.await
          if (item._tag === "End") {
            to.end()
            return
          }
          const slow = slowing
          if (slow !== undefined) {
            const due = item.at + slow.latencyMillis - (yield* Clock.currentTimeMillis)
            if (due > 0) yield* Effect.sleep(due)
            if (slow.bytesPerSecond !== undefined)
              yield* Effect.sleep((item.data.length / slow.bytesPerSecond) * 1000)
            // A stall that began while this chunk waited still holds it.
            yield* flowing.await
          }
          if (to.destroyed) return
          to.write(item.data)
          count(item.data.length)
        }
      })

    const pipe = (from: Net.Socket, to: Net.Socket, count: (bytes: number) => void) => {
      const inbox = Inbox.make<Item>()
      from.on("data", (data: Buffer) =>
        inbox.push({ _tag: "Chunk", data, at: clock.currentTimeMillisUnsafe() }),
      )
      from.on("end", () => {
        inbox.push({ _tag: "End" })
        inbox.close()
      })
      from.on("close", () => inbox.close())
      runFork(forward(inbox, to, count))
    }

    const accept = (client: Net.Socket) => {
      client.on("error", () => {})
      if (refusing) {
        stats.refused++
        client.destroy()
        return
      }
      stats.accepted++
      const server = Net.connect({
        port: options.target.port,
        host: options.target.host ?? "127.0.0.1",
        allowHalfOpen: true,
      })
      server.on("error", () => {})
      const link: Link = { client, server }
      links.add(link)
      // An orderly end travels through the queue like data; a broken side (reset, refused
      // upstream) takes the other down at once. The link is gone when both sockets are.
      const onClose = (other: Net.Socket) => (hadError: boolean) => {
        if (hadError) other.destroy()
        if (client.destroyed && server.destroyed) links.delete(link)
      }
      client.on("close", onClose(server))
      server.on("close", onClose(client))
      pipe(client, server, (n) => {
        stats.bytesToServer += n
      })
      pipe(server, client, (n) => {
        stats.bytesToClient += n
      })
    }

    const listener = yield* Effect.acquireRelease(
      Effect.callback<Net.Server, ProxyListenError>((resume) => {
        const srv = Net.createServer({ allowHalfOpen: true }, accept)
        srv.once("error", (error) => resume(Effect.fail(new ProxyListenError({ detail: error.message }))))
        srv.listen(0, "127.0.0.1", () => resume(Effect.succeed(srv)))
      }),
      (srv) =>
        Effect.callback<void>((resume) => {
          for (const link of links) {
            link.client.destroy()
            link.server.destroy()
          }
          links.clear()
          srv.close(() => resume(Effect.void))
        }),
    )
    const port = (listener.address() as Net.AddressInfo).port

    const cut = Effect.sync(() => {
      const n = links.size
      for (const link of links) {
        link.client.destroy()
        link.server.destroy()
      }
      links.clear()
      stats.cut += n
      return n
    })

    return {
      port,
      url: `ws://127.0.0.1:${port}`,
      cut,
      stall: Effect.asVoid(flowing.close),
      slow: (slow) =>
        Effect.sync(() => {
          slowing = {
            latencyMillis: slow.latency === undefined ? 0 : Duration.toMillis(slow.latency),
            bytesPerSecond: slow.bytesPerSecond,
          }
        }),
      resume: Effect.andThen(
        Effect.sync(() => {
          slowing = undefined
        }),
        flowing.open,
      ).pipe(Effect.asVoid),
      refuse: (value) =>
        Effect.sync(() => {
          refusing = value
        }),
      links: Effect.sync(() => links.size),
      stats: Effect.sync(() => ({ ...stats })),
    }
  })

export const layer = (options: Options): Layer.Layer<TcpProxy, ProxyListenError> =>
  Layer.effect(TcpProxy)(make(options))
