/**
 * The REST client against FakeRest's in-memory client, under TestClock: every wait is
 * exact. (Rest over real sockets is covered in Provider.test.ts.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Settle } from "@vigil/gateway/testing"
import { Rest } from "@vigil/provider"
import * as FakeRest from "@vigil/testing/FakeRest"
import { Cause, Duration, Effect, Exit, Fiber, Random, Redacted, Tracer } from "effect"
import { HttpClient } from "effect/http"
import { TestClock } from "effect/testing"

const token = "rest-test-token-SECRET-abc123"

const setup = (
  fake: Omit<FakeRest.Config, "token"> = {},
  client: Omit<Rest.RestConfig, "token" | "apiBaseUrl"> = {},
  clientToken = token,
) =>
  Effect.gen(function* () {
    const rest = yield* FakeRest.make({ token, ...fake })
    const api = yield* Rest.make({
      token: Redacted.make(clientToken),
      apiBaseUrl: rest.apiBaseUrl,
      ...client,
    }).pipe(Effect.provideService(HttpClient.HttpClient, rest.client))
    return { rest, api }
  })

const statuses = (records: ReadonlyArray<FakeRest.RequestRecord>) => records.map((r) => r.status)

describe("Rest", () => {
  it.effect("sends a message: Authorization header, JSON body with a nonce, the created message back", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup()
      const sent = yield* api.sendMessage("111", "hello")
      assert.strictEqual(sent.content, "hello")
      assert.strictEqual(sent.channel_id, "111")
      const [record] = yield* rest.requests
      assert.strictEqual(record?.status, 200)
      assert.isTrue(record?.authorized)
      assert.isString(record?.nonce)
      const state = yield* api.state
      assert.deepStrictEqual(
        state.buckets.map((b) => [b.hash, b.limit, b.remaining]),
        [["fake-messages", 5, 4]],
      )
    }),
  )

  it.effect("an empty bucket: the next request waits for the reset instead of being sent (no 429)", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup({ bucket: { requests: 5, window: "5 seconds" } })
      const fiber = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 7 }, (_, i) => i),
          (i) => api.sendMessage("111", `m${i}`),
          {
            concurrency: "unbounded",
          },
        ),
      )
      const other = yield* Effect.forkChild(api.sendMessage("222", "elsewhere"))
      yield* Settle.settle
      assert.strictEqual((yield* rest.requests).filter((r) => r.channelId === "111").length, 5)
      assert.strictEqual(
        (yield* Fiber.join(other)).content,
        "elsewhere",
        "another channel's bucket is not held up",
      )
      yield* Settle.advance(4_999)
      assert.strictEqual((yield* rest.requests).filter((r) => r.channelId === "111").length, 5)
      yield* Settle.advance(1)
      const sent = yield* Fiber.join(fiber)
      assert.strictEqual(sent.length, 7)
      const records = yield* rest.requests
      assert.isTrue(
        records.every((r) => r.status === 200),
        `no request rejected: ${statuses(records)}`,
      )
      assert.deepStrictEqual(
        records.filter((r) => r.channelId === "111").map((r) => [r.at - records[0]!.at, r.remaining]),
        [
          [0, 4],
          [0, 3],
          [0, 2],
          [0, 1],
          [0, 0],
          [5000, 4],
          [5000, 3],
        ],
      )
    }),
  )

  it.effect("429 on a route: waits retry_after exactly, then succeeds", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup()
      yield* rest.failNext({ status: 429, retryAfter: "2 seconds" })
      const fiber = yield* Effect.forkChild(api.sendMessage("111", "hi"))
      yield* Settle.settle
      assert.deepStrictEqual(statuses(yield* rest.requests), [429])
      yield* Settle.advance(1_999)
      assert.deepStrictEqual(statuses(yield* rest.requests), [429])
      yield* Settle.advance(1)
      assert.strictEqual((yield* Fiber.join(fiber)).content, "hi")
      assert.deepStrictEqual(statuses(yield* rest.requests), [429, 200])
      assert.strictEqual((yield* api.state).rateLimited, 1)
    }),
  )

  it.effect("a global 429 pauses every route until retry_after", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup()
      yield* rest.failNext({ status: 429, global: true, retryAfter: "3 seconds" })
      const first = yield* Effect.forkChild(api.sendMessage("111", "a"))
      yield* Settle.settle
      const second = yield* Effect.forkChild(api.sendMessage("222", "b"))
      yield* Settle.advance(2_999)
      assert.strictEqual((yield* rest.requests).length, 1, "the other route waits too")
      yield* Settle.advance(1)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      const records = yield* rest.requests
      assert.deepStrictEqual(
        records.map((r) => [r.channelId, r.status, r.at - records[0]!.at]),
        [
          ["111", 429, 0],
          ["111", 200, 3000],
          ["222", 200, 3000],
        ],
      )
    }),
  )

  it.effect("the global limit: at most 50 requests per second across routes, none refused", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup()
      const fiber = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 120 }, (_, i) => String(1000 + i)),
          (channel) => api.sendMessage(channel, "burst"),
          { concurrency: "unbounded" },
        ),
      )
      yield* Settle.settle
      assert.strictEqual((yield* rest.requests).length, 50)
      yield* Settle.advance(1_000)
      assert.strictEqual((yield* rest.requests).length, 100)
      yield* Settle.advance(1_000)
      yield* Fiber.join(fiber)
      const records = yield* rest.requests
      assert.strictEqual(records.length, 120)
      assert.isTrue(records.every((r) => r.status === 200))
    }),
  )

  it.effect("retries are bounded: still 429 after maxRateLimitRetries → RateLimited", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup({}, { maxRateLimitRetries: 2 })
      yield* rest.failNext({ status: 429, count: 10, retryAfter: "1 second" })
      const fiber = yield* Effect.forkChild(Effect.flip(api.sendMessage("111", "x")))
      for (let i = 0; i < 5; i++) yield* Settle.advance(1_000)
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "RateLimited")
      if (error._tag === "RateLimited") {
        assert.strictEqual(error.attempts, 3)
        assert.strictEqual(error.retryAfterMillis, 1000)
        assert.isFalse(error.global)
      }
      assert.strictEqual((yield* rest.requests).length, 3)
    }),
  )

  it.effect("a retry_after longer than maxRateLimitWait fails at once", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup({}, { maxRateLimitWait: "10 seconds" })
      yield* rest.failNext({ status: 429, retryAfter: "60 seconds", global: true })
      const error = yield* Effect.flip(api.sendMessage("111", "x"))
      assert.strictEqual(error._tag, "RateLimited")
      assert.include(error.message, "global")
    }),
  )

  it.effect("5xx: retried with backoff (nonce kept), then success; or RestError after maxRetries", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup({}, { maxRetries: 3, retryBackoff: "100 millis" })
      yield* rest.failNext({ status: 502, count: 2 })
      const ok = yield* Effect.forkChild(api.sendMessage("111", "eventually"))
      yield* Settle.advance(1_000)
      assert.strictEqual((yield* Fiber.join(ok)).content, "eventually")
      const records = yield* rest.requests
      assert.deepStrictEqual(statuses(records), [502, 502, 200])
      assert.strictEqual(new Set(records.map((r) => r.nonce)).size, 1, "the same nonce on every attempt")

      yield* rest.failNext({ status: 503, count: 10 })
      const failed = yield* Effect.forkChild(Effect.flip(api.sendMessage("111", "never")))
      yield* Settle.advance(5_000)
      const error = yield* Fiber.join(failed)
      assert.strictEqual(error._tag, "RestError")
      if (error._tag === "RestError") {
        assert.strictEqual(error.status, 503)
        assert.strictEqual(error.attempts, 4)
      }
    }),
  )

  it.effect(
    "nonces: a fractional clock instant is fine; two sends at one instant differ (pinned Random)",
    () =>
      Effect.gen(function* () {
        const { rest, api } = yield* setup()
        yield* TestClock.adjust(Duration.micros(500n)) // TestClock now stands at 0.5 ms
        const pinned: Random.Random = { nextIntUnsafe: () => 7, nextDoubleUnsafe: () => 0.25 }
        const [first, second] = yield* Effect.all([
          api.sendMessage("111", "one"),
          api.sendMessage("111", "two"),
        ]).pipe(Effect.provideService(Random.Random, pinned))
        assert.strictEqual(first.content, "one")
        assert.strictEqual(second.content, "two", "the second send is not taken for a retry of the first")
        assert.notStrictEqual(first.id, second.id)
        const nonces = (yield* rest.requests).map((r) => r.nonce ?? "")
        assert.strictEqual(new Set(nonces).size, 2)
        assert.isTrue(
          nonces.every((n) => n.length > 0 && n.length <= 25),
          nonces.join(","),
        )
      }),
  )

  it.effect("403, 404, 401 and invalid content: typed errors; the token appears in none", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup()
      yield* rest.failNext({ status: 403 })
      const forbidden = yield* Effect.flip(api.sendMessage("111", "x"))
      assert.strictEqual(forbidden._tag, "MissingPermissions")
      if (forbidden._tag === "MissingPermissions") assert.strictEqual(forbidden.code, 50013)
      yield* rest.failNext({ status: 404 })
      const missing = yield* Effect.flip(api.sendMessage("111", "x"))
      assert.strictEqual(missing._tag, "NotFound")
      const tooLong = yield* Effect.flip(api.sendMessage("111", "x".repeat(2001)))
      assert.strictEqual(tooLong._tag, "InvalidMessage")
      const empty = yield* Effect.flip(api.sendMessage("111", ""))
      assert.strictEqual(empty._tag, "InvalidMessage")
      assert.strictEqual((yield* rest.requests).length, 2, "invalid content is refused before sending")

      const wrong = yield* setup({}, {}, `${token}-WRONG`)
      const unauthorized = yield* Effect.flip(wrong.api.sendMessage("111", "x"))
      assert.strictEqual(unauthorized._tag, "Unauthorized")

      yield* rest.failNext({ status: 503, count: 10 })
      const down = yield* Effect.forkChild(Effect.flip(api.sendMessage("111", "x")))
      yield* Settle.advance(60_000)
      const restError = yield* Fiber.join(down)

      for (const error of [forbidden, missing, tooLong, empty, unauthorized, restError]) {
        for (const text of [
          error.message,
          String(error),
          JSON.stringify(error),
          Cause.pretty(Cause.fail(error)),
        ]) {
          assert.notInclude(text, "SECRET", `${error._tag} leaks the token: ${text}`)
        }
      }
    }),
  )

  it.effect("spans: the Authorization header is redacted even when headers are recorded", () =>
    Effect.gen(function* () {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        },
      })
      const { api } = yield* setup()
      yield* api.sendMessage("111", "traced").pipe(
        Effect.withTracer(tracer),
        Effect.provideService(HttpClient.TracerHeaderFilter, () => true),
      )
      const attributes = spans.flatMap((span) => [...span.attributes.entries()])
      assert.isTrue(spans.some((s) => s.name === "DiscordRest.sendMessage"))
      assert.strictEqual(
        attributes.find(([key]) => key === "http.request.header.authorization")?.[1],
        "<redacted>",
      )
      for (const [key, value] of attributes) assert.notInclude(String(value), "SECRET", key)
      const exit = yield* Effect.exit(api.sendMessage("111", ""))
      assert.isTrue(Exit.isFailure(exit))
    }),
  )
})
