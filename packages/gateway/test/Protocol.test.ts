import { describe, expect, it } from "@effect/vitest"
import { Protocol } from "@vigil/gateway"
import { Redacted, Result, Schema } from "effect"

describe("Protocol", () => {
  // The hot-path reader must accept exactly what the Envelope schema accepts.
  const samples: Array<unknown> = [
    { op: 0, d: {}, s: 1, t: "READY" },
    { op: 11, d: null, s: null, t: null },
    { op: 10, d: { heartbeat_interval: 41250 } },
    { op: 1, d: 5 },
    { op: 0, d: {}, s: null, t: "X" },
    { op: 0, d: {}, s: 1 },
    { op: 1.5, d: null },
    { op: "0", d: null },
    { d: null },
    { op: 0, d: {}, s: "1", t: "X" },
    { op: 0, d: {}, s: 1, t: 7 },
    [],
    null,
    "op",
  ]
  it.each(samples.map((s) => [JSON.stringify(s), s] as const))(
    "readEnvelope agrees with the Envelope schema: %s",
    (_, sample) => {
      const fast = Protocol.readEnvelope(sample)
      const schema = Schema.decodeUnknownResult(Protocol.Envelope)(sample)
      // The schema does not know that a dispatch needs `s` and `t`; the reader does.
      const dispatchWithoutSeq =
        Result.isSuccess(schema) &&
        schema.success.op === 0 &&
        (schema.success.s == null || schema.success.t == null)
      expect(typeof fast !== "string").toBe(Result.isSuccess(schema) && !dispatchWithoutSeq)
      if (typeof fast !== "string" && Result.isSuccess(schema)) {
        expect(fast).toEqual({
          op: schema.success.op,
          d: schema.success.d,
          s: schema.success.s ?? null,
          t: schema.success.t ?? null,
        })
      }
    },
  )

  it("utf8Length counts bytes as UTF-8 does, without encoding", () => {
    for (const text of [
      "",
      "ascii",
      "é",
      "€",
      "😀",
      "a😀b",
      "\ud800",
      "\ud800x",
      "日本語テキスト",
      "x".repeat(5000),
    ]) {
      expect(Protocol.utf8Length(text), JSON.stringify(text)).toBe(new TextEncoder().encode(text).byteLength)
    }
  })

  it("builds the payloads Discord expects; the token only on the wire", () => {
    const token = Redacted.make("secret")
    expect(
      JSON.parse(Protocol.identify({ token, intents: 513, shard: [1, 4], largeThreshold: 100 })),
    ).toMatchObject({
      op: 2,
      d: { token: "secret", intents: 513, shard: [1, 4], large_threshold: 100 },
    })
    expect(JSON.parse(Protocol.resume({ token, sessionId: "s", seq: 9 }))).toEqual({
      op: 6,
      d: { token: "secret", session_id: "s", seq: 9 },
    })
    expect(Protocol.heartbeat(null)).toBe('{"op":1,"d":null}')
    expect(Protocol.heartbeat(42)).toBe('{"op":1,"d":42}')
    expect(String(token)).not.toContain("secret")
  })

  it("builds the connect URL with v, encoding and compress", () => {
    expect(Protocol.gatewayUrl("wss://gateway.discord.gg", "zstd-stream")).toBe(
      "wss://gateway.discord.gg/?v=10&encoding=json&compress=zstd-stream",
    )
    expect(Protocol.gatewayUrl("wss://g.example/?compress=zlib-stream", "none")).toBe(
      "wss://g.example/?v=10&encoding=json",
    )
  })
})
