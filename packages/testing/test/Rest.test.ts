/**
 * The fake's `POST /channels/{id}/messages` (FakeRest's, also served by FakeGateway):
 * Discord's rate-limit headers, 429s, validation, injected failures and the recording.
 * (The provider's REST client against FakeRest is tested in packages/provider.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { HttpBody, HttpClient } from "effect/http"
import { TestClock } from "effect/testing"
import { FakeGateway, FakeRest, Recording } from "../src/index.ts"
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
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
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

  it.effect(
    "over the per-channel limit: 429 with retry_after; other channels are unaffected; the bucket resets",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 30_000,
          rest: { messageLimit: { requests: 2, window: 1000 } },
        })
        assert.strictEqual((yield* post(gateway, "1", { content: "a" })).status, 200)
        const last = yield* post(gateway, "1", { content: "b" })
        assert.strictEqual(last.headers.get("x-ratelimit-remaining"), "0")
        const limited = yield* post(gateway, "1", { content: "c" })
        assert.strictEqual(limited.status, 429)
        assert.strictEqual(limited.body.message, "You are being rate limited.")
        assert.isFalse(limited.body.global)
        assert.strictEqual(limited.body.retry_after, 1, "the whole window: the clock has not moved")
        assert.strictEqual(limited.headers.get("x-ratelimit-scope"), "user")
        assert.isString(limited.headers.get("retry-after"))
        assert.strictEqual((yield* post(gateway, "2", { content: "elsewhere" })).status, 200)
        yield* TestClock.adjust(999)
        assert.strictEqual((yield* post(gateway, "1", { content: "not yet" })).status, 429)
        yield* TestClock.adjust(1)
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
        heartbeatInterval: 30_000,
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

  it.live("GET /users/@me: the configured bot for its token, 401 for another; faults apply to it", () =>
    Effect.gen(function* () {
      const user = { id: "4200000000000000042", username: "answering-bot" }
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000, user })
      const me = (auth: string) =>
        Effect.promise(() =>
          fetch(`${gateway.httpUrl}/api/v10/users/@me`, { headers: { authorization: auth } }).then(
            async (res) => ({ status: res.status, body: (await res.json()) as any }),
          ),
        )
      const answer = yield* me(`Bot ${token}`)
      assert.strictEqual(answer.status, 200)
      assert.deepStrictEqual(
        [answer.body.id, answer.body.username, answer.body.bot],
        [user.id, user.username, true],
      )
      assert.strictEqual((yield* me("Bot another-token")).status, 401)
      yield* gateway.failPosts({ status: 503 })
      assert.strictEqual((yield* me(`Bot ${token}`)).status, 503)
      assert.deepStrictEqual(
        (yield* gateway.restRequests).map((r) => `${r.method} ${r.path} ${r.status}`),
        ["GET /users/@me 200", "GET /users/@me 401", "GET /users/@me 503"],
      )
    }),
  )

  it.live("validation: 401 without the token, 400 for an empty message, a too long one, or bad JSON", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
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
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 30_000 })
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

describe("FakeRest", () => {
  const restToken = "fake-rest-token"
  const send = (url: string, channel: string, body: unknown, auth = `Bot ${restToken}`) =>
    Effect.promise(() =>
      fetch(`${url}/channels/${channel}/messages`, {
        method: "POST",
        headers: { authorization: auth, "content-type": "application/json" },
        body: JSON.stringify(body),
      }).then(async (res) => ({ status: res.status, headers: res.headers, body: (await res.json()) as any })),
    )

  it.live("its own server and its in-memory client share one state and one recording", () =>
    Effect.gen(function* () {
      const rest = yield* FakeRest.make({ token: restToken, bucket: { requests: 2, window: "1 minute" } })
      assert.strictEqual((yield* send(rest.apiBaseUrl, "1", { content: "over http" })).status, 200)
      const answer = yield* HttpClient.post(`${rest.apiBaseUrl}/channels/1/messages`, {
        headers: { authorization: `Bot ${restToken}` },
        body: HttpBody.jsonUnsafe({ content: "in memory" }),
      }).pipe(Effect.provideService(HttpClient.HttpClient, rest.client))
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.headers["x-ratelimit-bucket"], "fake-messages")
      assert.strictEqual((yield* send(rest.url, "1", { content: "no /api prefix" })).status, 429)
      const records = yield* rest.requests
      assert.deepStrictEqual(
        records.map((r) => [r.index, r.via, r.status, r.remaining, r.limited]),
        [
          [0, "http", 200, 1, undefined],
          [1, "memory", 200, 0, undefined],
          [2, "http", 429, 0, "bucket"],
        ],
      )
      assert.deepStrictEqual(
        (yield* rest.messages).map((m) => m.content),
        ["over http", "in memory"],
      )
    }),
  )

  it.live("enforce_nonce returns the message already created; faults can target one channel", () =>
    Effect.gen(function* () {
      const rest = yield* FakeRest.make({ token: restToken })
      const first = yield* send(rest.apiBaseUrl, "1", { content: "once", nonce: "n", enforce_nonce: true })
      const again = yield* send(rest.apiBaseUrl, "1", { content: "once", nonce: "n", enforce_nonce: true })
      assert.strictEqual(again.body.id, first.body.id)
      assert.lengthOf(yield* rest.messages, 1)
      yield* rest.failNext({ status: 403, channelId: "2" })
      assert.strictEqual((yield* send(rest.apiBaseUrl, "1", { content: "fine" })).status, 200)
      const forbidden = yield* send(rest.apiBaseUrl, "2", { content: "not here" })
      assert.deepStrictEqual([forbidden.status, forbidden.body.code], [403, 50013])
      assert.isTrue((yield* rest.requests).at(-1)?.injected)
      assert.strictEqual((yield* send(rest.apiBaseUrl, "1", { content: "x" }, "Bot wrong")).status, 401)
      assert.isFalse((yield* rest.requests).at(-1)?.authorized)
    }),
  )
})

describe("FakeGateway REST, served by FakeRest", () => {
  it.live(
    "embeds without content are a message; a body over 1 MiB is 413; restRequests; failPosts per channel",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 30_000,
          rest: { bucketHash: "h" },
        })
        const embed = yield* post(gateway, "1", { embeds: [{ title: "t" }] })
        assert.strictEqual(embed.status, 200)
        assert.deepStrictEqual(embed.body.embeds, [{ title: "t" }])
        assert.strictEqual(embed.headers.get("x-ratelimit-bucket"), "h")
        const huge = yield* post(gateway, "1", { content: "x".repeat(1024 * 1024) })
        assert.deepStrictEqual([huge.status, huge.body.code], [413, 40005])
        yield* gateway.failPosts({ status: 500, channelId: "2" })
        assert.strictEqual((yield* post(gateway, "1", { content: "ok" })).status, 200)
        assert.strictEqual((yield* post(gateway, "2", { content: "broken" })).status, 500)
        assert.deepStrictEqual(
          (yield* gateway.restRequests).map((r) => [r.channelId, r.status, r.via]),
          [
            ["1", 200, "http"],
            ["1", 413, "http"],
            ["1", 200, "http"],
            ["2", 500, "http"],
          ],
        )
        const messages = yield* gateway.messages
        assert.deepStrictEqual(messages[0]?.body, { embeds: [{ title: "t" }] })
        assert.deepStrictEqual(
          messages.map((m) => m.content),
          ["", "ok"],
        )
      }),
  )
})
