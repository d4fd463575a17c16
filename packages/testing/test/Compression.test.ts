/**
 * Transport compression as a client sees it: decoded here with `node:zlib`, one context for
 * the connection's life, exactly as docs/protocol.md describes the two streams.
 */
import * as Zlib from "node:zlib"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { FakeGateway, Recording, Traffic } from "../src/index.ts"
import { connect, token } from "./support.ts"

const zlibSuffix = Buffer.from([0x00, 0x00, 0xff, 0xff])
const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

describe("FakeGateway transport compression", () => {
  it.live("zlib-stream: one deflate context, every message ends with 00 00 ff ff", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const client = yield* connect(gateway.connectUrl({ compress: "zlib-stream" }), {
        compress: "zlib-stream",
      })
      assert.strictEqual((yield* client.next()).op, 10)
      const ready = yield* client.identify()
      assert.strictEqual(ready.t, "READY")
      yield* gateway.emit("latest", { count: 5 })
      for (let i = 0; i < 5; i++) assert.strictEqual((yield* client.next()).d.content, `message ${i}`)
      assert.lengthOf(client.frames, 7)
      for (const frame of client.frames) assert.isTrue(frame.subarray(-4).equals(zlibSuffix))
      // one stream: only the first message carries the zlib header
      assert.strictEqual(client.frames[0]![0], 0x78)
      assert.isTrue(client.frames.slice(1).every((frame) => frame[0] !== 0x78 || frame[1] !== 0x9c))
    }),
  )

  it.live("zlib-stream split across frames: a message is complete only with the suffix", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, zlibFrameBytes: 16 })
      const client = yield* connect(gateway.connectUrl({ compress: "zlib-stream" }), {
        compress: "zlib-stream",
      })
      assert.strictEqual((yield* client.next()).op, 10)
      const ready = yield* client.identify()
      assert.strictEqual(ready.t, "READY")
      const guild = Traffic.guildIds(1)[0]!
      yield* gateway.dispatch("latest", "GUILD_CREATE", Traffic.guildCreate(guild, { members: 200 }))
      const created = yield* client.next()
      assert.strictEqual(created.d.members.length, 200)
      const sent = Recording.sent(yield* gateway.entries)
      assert.isTrue(sent.every((entry) => entry.frames > 1))
      assert.strictEqual(
        client.frames.length,
        sent.reduce((n, entry) => n + entry.frames, 0),
      )
      // Regrouped into messages, each message's bytes end with the suffix, and no shorter
      // run of its frames does (the suffix itself may straddle the last two frames).
      let at = 0
      for (const entry of sent) {
        const frames = client.frames.slice(at, at + entry.frames)
        at += entry.frames
        for (let k = 1; k <= frames.length; k++) {
          const ends = Buffer.concat(frames.slice(0, k)).subarray(-4).equals(zlibSuffix)
          assert.strictEqual(
            ends,
            k === frames.length,
            `message ending at frame ${at}, after ${k} of ${frames.length}`,
          )
        }
      }
    }),
  )

  it.live("zstd-stream: one context, each message flushed, frame magic only at the start", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const client = yield* connect(gateway.connectUrl({ compress: "zstd-stream" }), {
        compress: "zstd-stream",
      })
      assert.strictEqual((yield* client.next()).op, 10)
      yield* client.identify()
      yield* gateway.emit("latest", { count: 5 })
      for (let i = 0; i < 5; i++) assert.strictEqual((yield* client.next()).d.content, `message ${i}`)
      assert.lengthOf(client.frames, 7, "one WebSocket message per gateway message")
      assert.isTrue(client.frames[0]!.subarray(0, 4).equals(zstdMagic))
      assert.isTrue(client.frames.slice(1).every((frame) => !frame.subarray(0, 4).equals(zstdMagic)))
      const connections = yield* gateway.connections
      assert.strictEqual(connections[0]!.compression, "zstd-stream")
    }),
  )

  it.live(
    "payload compression (Identify compress: true): each payload after it is a zlib stream of its own",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
        const client = yield* connect(gateway.connectUrl())
        assert.strictEqual((yield* client.next()).op, 10)
        const ready = yield* client.identify({ compress: true })
        assert.strictEqual(ready.t, "READY")
        yield* client.heartbeat(1)
        assert.strictEqual((yield* client.next()).op, 11)
        assert.strictEqual(client.frames[0]!.toString("utf8")[0], "{", "Hello is plain JSON")
        for (const frame of client.frames.slice(1)) {
          assert.strictEqual(frame[0], 0x78, "a zlib header on every payload")
          assert.doesNotThrow(() => JSON.parse(Zlib.inflateSync(frame).toString("utf8")))
        }
      }),
  )

  it.live("an unknown compress value is refused with 4002, saying why", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
      const client = yield* connect(`${gateway.url}/?v=10&encoding=json&compress=brotli`)
      const closed = yield* client.closed()
      assert.strictEqual(closed.code, 4002)
      assert.match(closed.reason, /brotli/)
    }),
  )
})
