/**
 * Server text (close reasons) is bounded, printable and without the token: the sanitizer
 * alone, the close errors built from it, and a shard's status after a hostile close.
 */
import { assert, describe, it } from "@effect/vitest"
import { GatewayError, IdentifyThrottle, ServerText, SessionStore, Shard } from "@vigil/gateway"
import * as ScriptedGateway from "@vigil/gateway/testing/ScriptedGateway"
import * as Settle from "@vigil/gateway/testing/Settle"
import { Effect, Layer, Redacted, SubscriptionRef } from "effect"

/** Shaped like a Discord token (base64 id, timestamp, HMAC): found even when not given. */
const discordToken = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-"
/** A token of no particular shape: only redacted when the sanitizer is given it. */
const plainToken = "plain-secret-token-value"
const padding = "x".repeat(10 * 1024)

const byteLength = (text: string) => new TextEncoder().encode(text).length

describe("ServerText.sanitize", () => {
  it("keeps an ordinary reason as it is", () => {
    assert.strictEqual(ServerText.sanitize("Authentication failed."), "Authentication failed.")
    assert.strictEqual(ServerText.sanitize(""), "")
  })

  it("bounds the text to 123 UTF-8 bytes, never splitting a character", () => {
    assert.strictEqual(ServerText.sanitize(padding), "x".repeat(123))
    const wide = ServerText.sanitize("é😀".repeat(100))
    assert.isAtMost(byteLength(wide), ServerText.maxBytes)
    assert.isAbove(byteLength(wide), ServerText.maxBytes - 6)
    assert.notInclude(wide, "\uFFFD")
  })

  it("strips control and format characters (line breaks, NUL, bidi overrides, zero widths)", () => {
    assert.strictEqual(ServerText.sanitize("a\nb\r\u0000c\u001b[31md\u202ee\u200bf\u0085g"), "abc[31mdefg")
  })

  it("redacts the token given, wherever it sits and however it is split by controls", () => {
    const secret = Redacted.make(plainToken)
    for (const text of [
      plainToken,
      `bad token ${plainToken} bye`,
      `${plainToken}${plainToken}`,
      `echo: ${plainToken.slice(0, 5)}\u0000${plainToken.slice(5)}`,
    ]) {
      const out = ServerText.sanitize(text, secret)
      assert.notInclude(out, plainToken)
      assert.include(out, ServerText.redactedMark)
    }
    assert.strictEqual(ServerText.sanitize(`bad token ${plainToken} bye`, secret), "bad token [redacted] bye")
  })

  it("redacts a long part of the token (an echo cut short), not a short coincidence", () => {
    const secret = Redacted.make(plainToken)
    assert.strictEqual(ServerText.sanitize(`x ${plainToken.slice(3, 15)} y`, secret), "x [redacted] y")
    // The length bound falls inside the token: no part of it survives the cut.
    const cut = ServerText.sanitize(`${"y".repeat(110)}${plainToken}`, secret)
    assert.notInclude(cut, plainToken.slice(0, 8))
    assert.strictEqual(ServerText.sanitize("token secret", secret), "token secret")
  })

  it("redacts anything shaped like a Discord token even when no token is given", () => {
    const out = ServerText.sanitize(`you sent ${discordToken}!`)
    assert.strictEqual(out, "you sent [redacted]!")
  })
})

describe("close errors carry sanitized server text", () => {
  const hostile = `${padding}\n${plainToken}`
  const echoFirst = `${plainToken} ${padding}`

  it("ServerClosed.fromCode: the reason and the message hold neither the token nor the padding", () => {
    for (const reason of [hostile, echoFirst, `${discordToken} ${padding}`]) {
      const error = GatewayError.ServerClosed.fromCode(4000, reason, Redacted.make(plainToken))
      for (const text of [error.reason, error.message]) {
        assert.notInclude(text, plainToken)
        assert.notInclude(text, discordToken)
        assert.notInclude(text, "\n")
        assert.isBelow(text.length, 200)
      }
    }
  })

  it("ServerClosed built directly still prints a bounded message", () => {
    const error = new GatewayError.ServerClosed({
      code: 4000,
      reason: `${discordToken}${padding}`,
      action: "resume",
    })
    assert.notInclude(error.message, discordToken)
    assert.isBelow(error.message.length, 200)
  })

  it("TransportError: a detail quoting a server-chosen host is sanitized in the message", () => {
    const host = `${discordToken.toLowerCase()}.${"x".repeat(200)}.example`
    const error = new GatewayError.TransportError({ stage: "open", detail: `getaddrinfo ENOTFOUND ${host}` })
    assert.notInclude(error.message, discordToken.toLowerCase())
    assert.include(error.message, "getaddrinfo ENOTFOUND [redacted]")
    assert.isBelow(error.message.length, 200)
  })

  it("fatalFromClose: the fatal error's reason is sanitized too", () => {
    const error = GatewayError.fatalFromClose(4004, echoFirst, Redacted.make(plainToken))
    if (error?._tag !== "AuthenticationFailed")
      return assert.fail(`expected AuthenticationFailed, got ${error?._tag}`)
    assert.notInclude(error.reason, plainToken)
    assert.include(error.reason, ServerText.redactedMark)
    assert.isAtMost(byteLength(error.reason), ServerText.maxBytes)
  })
})

describe("a shard's status after a hostile close", () => {
  const env = Layer.mergeAll(
    ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: 41_250 }),
    SessionStore.SessionStore.layerMemory,
    IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
  )

  it.effect("a close reason with the token and 10 KB of text: lastError holds neither", () =>
    Effect.gen(function* () {
      const server = yield* ScriptedGateway.ScriptedGateway
      const shard = yield* Shard.make({
        token: Redacted.make(plainToken),
        intents: 1,
        shard: [0, 1],
        gatewayUrl: "memory://gateway",
      })
      yield* Settle.settle
      yield* server.peer()!.close(4000, `${padding} ${plainToken}\n${plainToken} ${padding}`)
      yield* Settle.settle
      const { lastError } = yield* SubscriptionRef.get(shard.status)
      assert.strictEqual(lastError?.tag, "ServerClosed")
      assert.strictEqual(lastError?.url, "memory://gateway", "the URL the connection had tried")
      const message = lastError?.message ?? `${plainToken}${padding}`
      assert.notInclude(message, plainToken)
      assert.notInclude(message, "\n")
      assert.isBelow(message.length, 200)
    }).pipe(Effect.provide(env)),
  )
})
