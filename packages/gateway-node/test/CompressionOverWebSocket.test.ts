/**
 * Transport compression end to end: a Shard on the ws transport with the Node codecs,
 * against FakeGateway compressing for real (zlib messages split over many frames, zstd with
 * one frame across messages), through a resume, with large GUILD_CREATE payloads.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, type Protocol, Shard } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Recording from "@vigil/testing/Recording"
import * as Traffic from "@vigil/testing/Traffic"
import { Effect, Layer, Redacted, Stream } from "effect"

const token = "compression-test-token"
const env = Layer.merge(NodeGateway.layer(), IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }))

const cases = [
  { compression: "zlib-stream", zlibFrameBytes: 64 },
  { compression: "zstd-stream", zlibFrameBytes: undefined },
] as const

describe("transport compression over real sockets", () => {
  it.live.each(cases)("$compression: every event arrives, across a resume, large ones included", (c) =>
    Effect.gen(function* () {
      const guild = Traffic.guildIds(1, 1)[0]!
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 300,
        zlibFrameBytes: c.zlibFrameBytes,
      })
      const seen: Array<Protocol.Dispatch> = []
      const shard = yield* Shard.make({
        token: Redacted.make(token),
        intents: 513,
        shard: [0, 1],
        gatewayUrl: gateway.url,
        compression: c.compression,
      })
      yield* Effect.forkScoped(Stream.runForEach(shard.events, (e) => Effect.sync(() => void seen.push(e))))
      yield* eventually(() => seen.length > 0, "READY")
      yield* gateway.emit("latest", { count: 200 })
      yield* gateway.dispatch("latest", "GUILD_CREATE", Traffic.guildCreate(guild, { members: 2_000 }))
      yield* gateway.drop("latest")
      yield* gateway.emit({ shard: 0 }, { count: 50 })
      yield* eventually(() => seen.filter((e) => e.type === "MESSAGE_CREATE").length === 250, "250 messages")
      const entries = yield* gateway.entries
      assert.strictEqual(Recording.resumeCount(entries), 1)
      const opened = Recording.only(entries, "Opened")
      assert.isTrue(opened.every((o) => o.path.includes(`compress=${c.compression}`)))
      const big = seen.find((e) => e.type === "GUILD_CREATE")?.data as { members: Array<unknown> } | undefined
      assert.strictEqual(big?.members.length, 2_000)
      const seqs = seen.map((e) => e.seq)
      assert.deepStrictEqual(
        seqs,
        Array.from({ length: seqs.length }, (_, i) => i + 1),
      )
    }).pipe(Effect.provide(env)),
  )
})
