/**
 * A WebSocket server written by hand on a TCP socket (127.0.0.1), for the tests where the
 * bytes and their timing are the point: several frames in one TCP write, a close frame whose
 * TCP close never follows. `ws` as a server would do neither. Test code only.
 */
import { createHash } from "node:crypto"
import { type AddressInfo, createServer, type Socket } from "node:net"
import { Effect, type Scope } from "effect"

export interface RawPeer {
  /** The client's text messages, parsed, in order. */
  readonly received: Array<{ readonly op: number | undefined; readonly d: unknown }>
  /** Called with each client text message as it arrives. */
  onMessage: (message: { readonly op: number | undefined; readonly d: unknown }) => void
  /** Writes each payload (JSON-encoded) as a text frame, all in a single TCP write. */
  readonly send: (...payloads: Array<unknown>) => void
  /** Writes a close frame with `code`, and nothing else: the TCP link stays open. */
  readonly closeFrame: (code: number, reason?: string) => void
  /** Ends the TCP link at once. */
  readonly destroy: () => void
  /** True once the client's side of the TCP link is gone. */
  readonly clientGone: () => boolean
}

const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const frame = (opcode: number, payload: Buffer): Buffer => {
  const length = payload.length
  let head: Buffer
  if (length < 126) {
    head = Buffer.from([0x80 | opcode, length])
  } else if (length < 65_536) {
    head = Buffer.alloc(4)
    head[0] = 0x80 | opcode
    head[1] = 126
    head.writeUInt16BE(length, 2)
  } else {
    head = Buffer.alloc(10)
    head[0] = 0x80 | opcode
    head[1] = 127
    head.writeBigUInt64BE(BigInt(length), 2)
  }
  return Buffer.concat([head, payload])
}

/** Reads the client's (masked) frames out of `buffer`; returns what is left unread. */
const readFrames = (buffer: Buffer, onFrame: (opcode: number, payload: Buffer) => void): Buffer => {
  let rest = buffer
  while (rest.length >= 2) {
    const opcode = rest[0]! & 0x0f
    let length = rest[1]! & 0x7f
    let offset = 2
    if (length === 126) {
      if (rest.length < 4) break
      length = rest.readUInt16BE(2)
      offset = 4
    } else if (length === 127) {
      if (rest.length < 10) break
      length = Number(rest.readBigUInt64BE(2))
      offset = 10
    }
    const masked = (rest[1]! & 0x80) !== 0
    const mask = masked ? rest.subarray(offset, offset + 4) : undefined
    if (masked) offset += 4
    if (rest.length < offset + length) break
    const payload = Buffer.from(rest.subarray(offset, offset + length))
    if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!
    onFrame(opcode, payload)
    rest = rest.subarray(offset + length)
  }
  return rest
}

/** Starts the server; `onConnection` scripts each connection. Closed with the scope. */
export const make = (
  onConnection: (peer: RawPeer) => void,
): Effect.Effect<{ readonly url: string; readonly peers: ReadonlyArray<RawPeer> }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const sockets: Array<Socket> = []
    const peers: Array<RawPeer> = []
    const server = yield* Effect.acquireRelease(
      Effect.callback<ReturnType<typeof createServer>>((resume) => {
        const srv = createServer({ allowHalfOpen: true }, (socket) => {
          sockets.push(socket)
          socket.on("error", () => {})
          let gone = false
          socket.on("close", () => {
            gone = true
          })
          let pending: Buffer = Buffer.alloc(0)
          let upgraded = false
          const peer: RawPeer = {
            received: [],
            onMessage: () => {},
            send: (...payloads) =>
              void socket.write(
                Buffer.concat(payloads.map((p) => frame(0x1, Buffer.from(JSON.stringify(p))))),
              ),
            closeFrame: (code, reason = "") => {
              const payload = Buffer.alloc(2 + Buffer.byteLength(reason))
              payload.writeUInt16BE(code, 0)
              payload.write(reason, 2)
              socket.write(frame(0x8, payload))
            },
            destroy: () => void socket.destroy(),
            clientGone: () => gone,
          }
          socket.on("data", (chunk: Buffer) => {
            pending = Buffer.concat([pending, chunk])
            if (!upgraded) {
              const end = pending.indexOf("\r\n\r\n")
              if (end < 0) return
              const key = /sec-websocket-key:\s*(\S+)/i.exec(pending.subarray(0, end).toString())?.[1] ?? ""
              const accept = createHash("sha1")
                .update(key + guid)
                .digest("base64")
              socket.write(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                  `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
              )
              pending = pending.subarray(end + 4)
              upgraded = true
              peers.push(peer)
              onConnection(peer)
            }
            pending = readFrames(pending, (opcode, payload) => {
              if (opcode !== 0x1) return
              const parsed = JSON.parse(payload.toString()) as { op?: number; d?: unknown }
              const message = { op: parsed.op, d: parsed.d }
              peer.received.push(message)
              peer.onMessage(message)
            })
          })
        })
        srv.listen(0, "127.0.0.1", () => resume(Effect.succeed(srv)))
      }),
      (srv) =>
        Effect.callback<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          srv.close(() => resume(Effect.void))
        }),
    )
    return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, peers }
  })
