import { assert, describe, it } from "@effect/vitest"
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
      assert.strictEqual(typeof fast !== "string", Result.isSuccess(schema) && !dispatchWithoutSeq)
      if (typeof fast !== "string" && Result.isSuccess(schema)) {
        assert.deepStrictEqual(fast, {
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
      assert.strictEqual(
        Protocol.utf8Length(text),
        new TextEncoder().encode(text).byteLength,
        JSON.stringify(text),
      )
    }
  })

  it("builds the payloads Discord expects; the token only on the wire", () => {
    const token = Redacted.make("secret")
    const identify = JSON.parse(
      Protocol.identify({ token, intents: 513, shard: [1, 4], largeThreshold: 100 }),
    )
    assert.strictEqual(identify.op, 2)
    assert.deepInclude(identify.d, { token: "secret", intents: 513, shard: [1, 4], large_threshold: 100 })
    assert.deepStrictEqual(JSON.parse(Protocol.resume({ token, sessionId: "s", seq: 9 })), {
      op: 6,
      d: { token: "secret", session_id: "s", seq: 9 },
    })
    assert.strictEqual(Protocol.heartbeat(null), '{"op":1,"d":null}')
    assert.strictEqual(Protocol.heartbeat(42), '{"op":1,"d":42}')
    assert.notInclude(String(token), "secret")
  })

  it("builds the connect URL with v, encoding and compress", () => {
    assert.strictEqual(
      Protocol.gatewayUrl("wss://gateway.discord.gg", "zstd-stream"),
      "wss://gateway.discord.gg/?v=10&encoding=json&compress=zstd-stream",
    )
    assert.strictEqual(
      Protocol.gatewayUrl("wss://g.example/?compress=zlib-stream", "none"),
      "wss://g.example/?v=10&encoding=json",
    )
  })
})
