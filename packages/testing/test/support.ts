/**
 * A bare `ws` client for testing the fake gateway from the outside, independent of Vigil's
 * client: it decodes `zlib-stream` / `zstd-stream` with `node:zlib` on its own, queues
 * payloads, and records how the socket closed.
 */
import * as Zlib from "node:zlib"
import { Deferred, Effect, Schema, type Scope } from "effect"
import { WebSocket } from "ws"
import * as Inbox from "../src/internal/Inbox.ts"

export const token = "fake-gateway-test-token"

export interface Payload {
  readonly op: number
  readonly d: any
  readonly s: number | null
  readonly t: string | null
}

export class ClientError extends Schema.TaggedError<ClientError>()("ClientError", { detail: Schema.String }) {
  override get message() {
    return this.detail
  }
}

export interface Closed {
  readonly code: number
  readonly reason: string
}

export interface TestClient {
  readonly ws: WebSocket
  /** Every WebSocket message as it arrived (before decompression). */
  readonly frames: ReadonlyArray<Buffer>
  /** The next payload; fails after `timeout` ms (default 3000). */
  readonly next: (timeout?: number) => Effect.Effect<Payload, ClientError>
  /** The next payload passing `test`, skipping others. */
  readonly nextWhere: (test: (p: Payload) => boolean, timeout?: number) => Effect.Effect<Payload, ClientError>
  /** The next payload if one comes within `ms`, else undefined. */
  readonly poll: (ms: number) => Effect.Effect<Payload | undefined>
  readonly send: (payload: unknown) => Effect.Effect<void>
  readonly sendRaw: (data: string | Buffer) => Effect.Effect<void>
  readonly heartbeat: (seq?: number | null) => Effect.Effect<void>
  /** Sends Identify (defaults: the test token, intents 513, shard [0, 1]) and waits for READY. */
  readonly identify: (d?: Record<string, unknown>) => Effect.Effect<Payload, ClientError>
  /** How the socket closed; waits up to `timeout` ms (default 3000). */
  readonly closed: (timeout?: number) => Effect.Effect<Closed, ClientError>
  readonly isClosed: () => boolean
  readonly close: (code: number, reason?: string) => Effect.Effect<void>
  readonly terminate: Effect.Effect<void>
}

export const identifyData = (overrides: Record<string, unknown> = {}) => ({
  token,
  properties: { os: "linux", browser: "test", device: "test" },
  intents: 513,
  shard: [0, 1],
  ...overrides,
})

const streamDecoder = (stream: Zlib.Inflate | Zlib.ZstdDecompress, flush: number) => {
  const chunks: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => chunks.push(chunk))
  return (data: Buffer) =>
    Effect.callback<string>((resume) => {
      stream.write(data)
      stream.flush(flush, () => resume(Effect.succeed(Buffer.concat(chunks.splice(0)).toString("utf8"))))
    })
}

const zlibSuffix = Buffer.from([0x00, 0x00, 0xff, 0xff])

export const connect = (
  url: string,
  options: { readonly compress?: "zlib-stream" | "zstd-stream" } = {},
): Effect.Effect<TestClient, ClientError, Scope.Scope> =>
  Effect.gen(function* () {
    const ws = yield* Effect.acquireRelease(
      Effect.sync(() => new WebSocket(url, { perMessageDeflate: false })),
      (ws) => Effect.sync(() => ws.terminate()),
    )
    const raw = Inbox.make<Buffer>()
    const payloads = Inbox.make<Payload>()
    const frames: Array<Buffer> = []
    const closed = Deferred.makeUnsafe<Closed>()
    ws.on("message", (data: Buffer) => {
      frames.push(data)
      raw.push(data)
    })
    ws.on("close", (code: number, reason: Buffer) => {
      Deferred.doneUnsafe(closed, Effect.succeed({ code, reason: reason.toString("utf8") }))
      raw.close()
    })
    ws.on("error", () => {})

    yield* Effect.callback<void, ClientError>((resume) => {
      ws.once("open", () => resume(Effect.void))
      ws.once("error", (error) =>
        resume(Effect.fail(new ClientError({ detail: `connect: ${error.message}` }))),
      )
      ws.once("close", (code) =>
        resume(Effect.fail(new ClientError({ detail: `closed while connecting: ${code}` }))),
      )
    })

    // One decoder fiber, so a timed-out `next` never interrupts a decompression midway.
    const zlib = options.compress === "zlib-stream" ? Zlib.createInflate() : undefined
    const zstd = options.compress === "zstd-stream" ? Zlib.createZstdDecompress() : undefined
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        zlib?.destroy()
        zstd?.destroy()
      }),
    )
    const inflate = zlib ? streamDecoder(zlib, Zlib.constants.Z_SYNC_FLUSH) : undefined
    const unzstd = zstd ? streamDecoder(zstd, Zlib.constants.ZSTD_e_flush) : undefined
    yield* Effect.forkScoped(
      Effect.gen(function* () {
        let pending: Array<Buffer> = []
        while (true) {
          const frame = yield* raw.take
          if (frame === undefined) return payloads.close()
          let text: string | undefined
          if (inflate) {
            // Complete when the buffered bytes end with the suffix: the last frame of a
            // message may hold fewer than its 4 bytes.
            pending.push(frame)
            const buffered = Buffer.concat(pending)
            if (buffered.length >= 4 && buffered.subarray(-4).equals(zlibSuffix)) {
              text = yield* inflate(buffered)
              pending = []
            }
          } else if (unzstd) text = yield* unzstd(frame)
          // Payload compression (Identify's `compress: true`): a whole zlib stream per payload.
          else text = frame[0] === 0x78 ? Zlib.inflateSync(frame).toString("utf8") : frame.toString("utf8")
          if (text !== undefined) payloads.push(JSON.parse(text) as Payload)
        }
      }),
    )

    const next = (timeout = 3000) =>
      payloads.take.pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.succeed(undefined),
        }),
        Effect.flatMap((payload) =>
          payload === undefined
            ? Effect.fail(
                new ClientError({
                  detail: client.isClosed() ? "the socket closed" : `no payload within ${timeout} ms`,
                }),
              )
            : Effect.succeed(payload),
        ),
      )
    const nextWhere = (test: (p: Payload) => boolean, timeout = 3000): Effect.Effect<Payload, ClientError> =>
      Effect.flatMap(next(timeout), (payload) =>
        test(payload) ? Effect.succeed(payload) : nextWhere(test, timeout),
      )
    const send = (payload: unknown) => Effect.sync(() => ws.send(JSON.stringify(payload)))

    const client: TestClient = {
      ws,
      frames,
      next,
      nextWhere,
      poll: (ms) =>
        payloads.take.pipe(Effect.timeoutOrElse({ duration: ms, orElse: () => Effect.succeed(undefined) })),
      send,
      sendRaw: (data) => Effect.sync(() => ws.send(data)),
      heartbeat: (seq = null) => send({ op: 1, d: seq }),
      identify: (d) =>
        Effect.andThen(
          send({ op: 2, d: identifyData(d) }),
          nextWhere((p) => p.t === "READY" || p.op === 9),
        ),
      closed: (timeout = 3000) =>
        Deferred.await(closed).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () => Effect.fail(new ClientError({ detail: `socket not closed within ${timeout} ms` })),
          }),
        ),
      isClosed: () => Deferred.isDoneUnsafe(closed),
      close: (code, reason) => Effect.sync(() => ws.close(code, reason)),
      terminate: Effect.sync(() => ws.terminate()),
    }
    return client
  })
