/**
 * Evidence that FakeGateway speaks the real protocol: @discordjs/ws — an independent
 * client nobody here wrote — connects, identifies, heartbeats, receives dispatches and
 * resumes after a forced close, without knowing it is not talking to Discord.
 */
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from "@discordjs/ws"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { eventually } from "../src/Eventually.ts"
import { FakeGateway, Recording } from "../src/index.ts"

const token = "interop-token"

const cases = [
  { name: "json", compression: null, zlibFrameBytes: undefined },
  // One frame per message. With the fake splitting messages over several frames (allowed by
  // the protocol, and covered by Vigil's codec tests), @discordjs/ws 2.0.4 fails to parse:
  // it looks for the 00 00 ff ff suffix at the end of each *frame*, so when the suffix
  // straddles a message's last two frames it misses the end, and inflates that message
  // together with the next ("Unexpected non-whitespace character after JSON"). docs/protocol.md
  // says the message is complete when the *buffered bytes* end with the suffix, as the fake
  // sends it; the client is wrong there, not the fake.
  { name: "zlib-stream", compression: CompressionMethod.ZlibNative, zlibFrameBytes: undefined },
] as const

describe("interop: @discordjs/ws against FakeGateway", () => {
  it.live.each(cases)(
    "$name: identifies, heartbeats, receives dispatches, and resumes after a forced close",
    (c) =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 300,
          zlibFrameBytes: c.zlibFrameBytes,
        })
        // @discordjs/ws asks its REST client for GET /gateway/bot: hand it the fake's own answer.
        const gatewayBot = yield* Effect.promise(() =>
          fetch(`${gateway.httpUrl}/gateway/bot`, { headers: { authorization: `Bot ${token}` } }).then((r) =>
            r.json(),
          ),
        )
        const manager = new WebSocketManager({
          token,
          intents: 513 as never, // GUILDS | GUILD_MESSAGES; the enum type wants a single member
          rest: { get: async () => gatewayBot } as never,
          compression: c.compression,
          helloTimeout: 5_000,
          readyTimeout: 5_000,
        })
        const dispatches: Array<string> = []
        let ready = 0
        let resumed = 0
        let heartbeats = 0
        manager.on(
          WebSocketShardEvents.Dispatch,
          (payload) => void dispatches.push(`${payload.t}#${payload.s}`),
        )
        manager.on(WebSocketShardEvents.Ready, () => void ready++)
        manager.on(WebSocketShardEvents.Resumed, () => void resumed++)
        manager.on(WebSocketShardEvents.HeartbeatComplete, () => void heartbeats++)
        yield* Effect.acquireRelease(
          Effect.promise(() => manager.connect()),
          () => Effect.promise(async () => manager.destroy()),
        )
        yield* eventually(() => ready === 1, "READY")
        yield* gateway.emit("latest", { count: 10 })
        yield* eventually(
          () => dispatches.filter((d) => d.startsWith("MESSAGE_CREATE")).length === 10,
          "10 dispatches",
        )
        yield* eventually(() => heartbeats >= 2, "two heartbeat round trips")

        yield* gateway.close("latest", 4000, { reason: "interop: forced close" })
        yield* eventually(() => resumed === 1, "RESUMED")
        yield* gateway.emit("latest", { count: 3 })
        yield* eventually(
          () => dispatches.filter((d) => d.startsWith("MESSAGE_CREATE")).length === 13,
          "more dispatches",
        )

        const entries = yield* gateway.entries
        assert.strictEqual(Recording.identifyCount(entries), 1, "resumed, not re-identified")
        assert.strictEqual(Recording.resumeCount(entries), 1)
        assert.isAtLeast(Recording.received(entries, 1).length, 2, "the server saw heartbeats")
        const sequences = dispatches.map((d) => Number(d.split("#")[1]))
        assert.deepStrictEqual(
          sequences,
          sequences.slice().sort((a, b) => a - b),
          "in order",
        )
        assert.strictEqual(new Set(sequences).size, sequences.length, "no repeats")
      }),
  )
})
