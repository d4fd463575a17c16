/**
 * The fake's `POST /channels/{id}/messages`: Discord's rate-limit headers, 429s, validation,
 * and injected failures.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { FakeGateway, Recording } from "../src/index.ts"
import { token } from "./support.ts"

const post = (
  gateway: FakeGateway.FakeGatewayService,
  channel: string,
  body: unknown,
  auth = `Bot ${token}`,
) =>
  Effect.promise(() =>
    fetch(`${gateway.httpUrl}/api/v10/channels/${channel}/messages`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }).then(async (res) => ({ status: res.status, headers: res.headers, body: (await res.json()) as any })),
  )

describe("FakeGateway REST", () => {
  it.live("a message post returns the message and the bucket's rate-limit headers", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1000 })
      const res = yield* post(gateway, "111", { content: "hello", nonce: "n1" })
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.body.content, "hello")
      assert.strictEqual(res.body.channel_id, "111")
      assert.strictEqual(res.body.nonce, "n1")
      assert.isTrue(res.body.author.bot)
      assert.strictEqual(res.headers.get("x-ratelimit-limit"), "5")
      assert.strictEqual(res.headers.get("x-ratelimit-remaining"), "4")
      assert.isAbove(Number(res.headers.get("x-ratelimit-reset-after")), 4.9)
      assert.isString(res.headers.get("x-ratelimit-bucket"))
      const messages = yield* gateway.messages
      assert.deepStrictEqual(
        messages.map((m) => [m.channelId, m.content]),
        [["111", "hello"]],
      )
    }),
  )

  it.live(
    "over the per-channel limit: 429 with retry_after; other channels are unaffected; the bucket resets",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 1000,
          rest: { messageLimit: { requests: 2, window: 1000 } },
        })
        assert.strictEqual((yield* post(gateway, "1", { content: "a" })).status, 200)
        const last = yield* post(gateway, "1", { content: "b" })
        assert.strictEqual(last.headers.get("x-ratelimit-remaining"), "0")
        const limited = yield* post(gateway, "1", { content: "c" })
        assert.strictEqual(limited.status, 429)
        assert.strictEqual(limited.body.message, "You are being rate limited.")
        assert.isFalse(limited.body.global)
        assert.isAbove(limited.body.retry_after, 0)
        assert.isAtMost(limited.body.retry_after, 1)
        assert.strictEqual(limited.headers.get("x-ratelimit-scope"), "user")
        assert.isString(limited.headers.get("retry-after"))
        assert.strictEqual((yield* post(gateway, "2", { content: "elsewhere" })).status, 200)
        yield* Effect.sleep(1050)
        assert.strictEqual((yield* post(gateway, "1", { content: "again" })).status, 200)
        assert.deepStrictEqual(
          (yield* gateway.messages).map((m) => m.content),
          ["a", "b", "elsewhere", "again"],
        )
      }),
  )

  it.live("over the global limit: 429 with global true", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: 1000,
        rest: { globalLimit: { requests: 3, window: "1 minute" } },
      })
      for (const channel of ["1", "2", "3"])
        assert.strictEqual((yield* post(gateway, channel, { content: "x" })).status, 200)
      const limited = yield* post(gateway, "4", { content: "x" })
      assert.strictEqual(limited.status, 429)
      assert.isTrue(limited.body.global)
      assert.strictEqual(limited.headers.get("x-ratelimit-global"), "true")
    }),
  )

  it.live("validation: 401 without the token, 400 for an empty message, a too long one, or bad JSON", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1000 })
      assert.strictEqual((yield* post(gateway, "1", { content: "x" }, "Bot wrong")).status, 401)
      const empty = yield* post(gateway, "1", { content: "" })
      assert.deepStrictEqual([empty.status, empty.body.code], [400, 50006])
      const long = yield* post(gateway, "1", { content: "x".repeat(2001) })
      assert.deepStrictEqual([long.status, long.body.code], [400, 50035])
      const garbage = yield* post(gateway, "1", "{nope")
      assert.deepStrictEqual([garbage.status, garbage.body.code], [400, 50109])
      assert.lengthOf(yield* gateway.messages, 0)
    }),
  )

  it.live("failPosts: the next posts get the injected answer, then things go back to normal", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1000 })
      yield* gateway.failPosts({ status: 503, count: 2 })
      yield* gateway.failPosts({ status: 429, retryAfter: 1500, global: true })
      assert.strictEqual((yield* post(gateway, "1", { content: "x" })).status, 503)
      assert.strictEqual((yield* post(gateway, "1", { content: "x" })).status, 503)
      const limited = yield* post(gateway, "1", { content: "x" })
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.body.retry_after, 1.5)
      assert.strictEqual(limited.headers.get("retry-after"), "2")
      assert.strictEqual((yield* post(gateway, "1", { content: "x" })).status, 200)
      const entries = yield* gateway.entries
      assert.lengthOf(Recording.faults(entries, "fail-posts"), 2)
      assert.deepStrictEqual(
        Recording.only(entries, "Http").map((e) => e.status),
        [503, 503, 429, 200],
      )
    }),
  )
})
