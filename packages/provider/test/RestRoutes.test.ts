/**
 * REST beyond `sendMessage`, against FakeRest's in-memory client under TestClock: the generic
 * `request` (same buckets, 429 handling, typed errors) and the typed helpers — reply with
 * embeds and components, edit, delete, react, interaction answers — with neither the bot's
 * token nor an interaction's in any log, span or error.
 */
import { assert, describe, it } from "@effect/vitest"
import { Settle } from "@vigil/gateway/testing"
import { Rest } from "@vigil/provider"
import * as FakeRest from "@vigil/testing/FakeRest"
import { ButtonStyle, ComponentType, InteractionResponseType, MessageFlags } from "discord-api-types/v10"
import { Cause, Effect, Fiber, Logger, Redacted, References, Tracer } from "effect"
import { HttpClient } from "effect/http"

const token = "rest-routes-token-SECRET-abc123"
const interactionToken = "interaction-token-SECRET-xyz"

const setup = Effect.gen(function* () {
  const rest = yield* FakeRest.make({ token })
  const api = yield* Rest.make({ token: Redacted.make(token), apiBaseUrl: rest.apiBaseUrl }).pipe(
    Effect.provideService(HttpClient.HttpClient, rest.client),
  )
  return { rest, api }
})

const requests = (rest: FakeRest.FakeRestService) =>
  Effect.map(rest.requests, (records) => records.map((r) => `${r.method} ${r.path} ${r.status}`))

const embed = { title: "Status", description: "all shards ready", color: 0x57f287 }
const row: NonNullable<Rest.CreateMessage["components"]>[number] = {
  type: ComponentType.ActionRow,
  components: [
    { type: ComponentType.Button, style: ButtonStyle.Primary, label: "Refresh", custom_id: "refresh" },
  ],
}

describe("Rest routes", () => {
  it.effect("reply with embeds and components: one typed body, a nonce, the message back", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup
      const original = yield* api.sendMessage("111", "status?")
      const reply = yield* api.reply("111", original.id, { embeds: [embed], components: [row] })
      assert.deepStrictEqual(reply.embeds, [embed])
      assert.strictEqual(reply.channel_id, "111")
      const posted = (yield* rest.messages)[1]!
      assert.deepInclude(posted.body as object, {
        embeds: [embed],
        components: [row],
        message_reference: { message_id: original.id, fail_if_not_exists: false },
        enforce_nonce: true,
      })
      assert.isString(posted.nonce)
    }),
  )

  it.effect("edit, react and delete a message; a second delete is a typed NotFound", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup
      const sent = yield* api.createMessage("111", { content: "draft" })
      const edited = yield* api.editMessage("111", sent.id, {
        content: "final",
        flags: MessageFlags.SuppressEmbeds,
      })
      assert.strictEqual(edited.content, "final")
      assert.deepStrictEqual(
        (yield* rest.messages).map((m) => m.content),
        ["final"],
      )
      yield* api.react("111", sent.id, "👍")
      yield* api.react("111", sent.id, "party:123456789012345678")
      assert.deepStrictEqual(
        (yield* rest.reactions).map((r) => r.emoji),
        ["👍", "party:123456789012345678"],
      )
      yield* api.deleteMessage("111", sent.id, { reason: "clean up: ünïcode" })
      assert.deepStrictEqual(yield* rest.messages, [])
      assert.strictEqual((yield* rest.requests).at(-1)!.reason, "clean up: ünïcode")
      const again = yield* Effect.flip(api.deleteMessage("111", sent.id))
      assert.strictEqual(again._tag, "NotFound")
      assert.include(again.message, "/channels/{channel_id}/messages/{message_id}")
      assert.deepStrictEqual(yield* requests(rest), [
        "POST /channels/111/messages 200",
        `PATCH /channels/111/messages/${sent.id} 200`,
        `PUT /channels/111/messages/${sent.id}/reactions/%F0%9F%91%8D/@me 204`,
        `PUT /channels/111/messages/${sent.id}/reactions/party%3A123456789012345678/@me 204`,
        `DELETE /channels/111/messages/${sent.id} 204`,
        `DELETE /channels/111/messages/${sent.id} 404`,
      ])
    }),
  )

  it.effect(
    "request: any route, the same bucket as the helpers; the empty bucket is waited out, not hit",
    () =>
      Effect.gen(function* () {
        const { rest, api } = yield* setup
        const post = (content: string) =>
          api.request({
            method: "POST",
            route: "/channels/{channel_id}/messages",
            params: { channel_id: "111" },
            body: { content },
          })
        const fiber = yield* Effect.forkChild(
          Effect.all([
            api.sendMessage("111", "a"),
            post("b"),
            api.sendMessage("111", "c"),
            post("d"),
            post("e"),
            post("f"),
          ]),
        )
        yield* Settle.settle
        assert.strictEqual((yield* rest.requests).length, 5, "the sixth waits for the bucket's reset")
        yield* Settle.advance(5_000)
        const answers = yield* Fiber.join(fiber)
        assert.strictEqual((answers[5] as { content: string }).content, "f")
        assert.isTrue((yield* rest.requests).every((r) => r.status === 200))
        assert.strictEqual((yield* api.state).buckets.length, 1)
      }),
  )

  it.effect("request: a 429 is waited out and retried; unknown routes and missing parameters are typed", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup
      const sent = yield* api.sendMessage("111", "hello")
      yield* rest.failNext({ status: 429, retryAfter: "2 seconds" })
      const fiber = yield* Effect.forkChild(api.editMessage("111", sent.id, { content: "edited" }))
      yield* Settle.advance(1_999)
      assert.isUndefined(fiber.pollUnsafe())
      yield* Settle.advance(1)
      assert.strictEqual((yield* Fiber.join(fiber)).content, "edited")

      const unknown = yield* Effect.flip(
        api.request({ method: "GET", route: "/guilds/{guild_id}/widget", params: { guild_id: "5" } }),
      )
      assert.strictEqual(unknown._tag, "NotFound")
      const before = (yield* rest.requests).length
      const missing = yield* Effect.flip(
        api.request({
          method: "GET",
          route: "/channels/{channel_id}/messages/{message_id}",
          params: { channel_id: "1" },
        }),
      )
      assert.strictEqual(missing._tag, "InvalidMessage")
      assert.include(missing.message, "message_id")
      assert.strictEqual((yield* rest.requests).length, before, "refused before sending")
      const traversal = yield* api
        .request({
          method: "DELETE",
          route: "/channels/{channel_id}/messages/{message_id}",
          params: { channel_id: "111", message_id: "../../x" },
        })
        .pipe(Effect.flip)
      assert.strictEqual(traversal._tag, "NotFound")
      assert.include((yield* requests(rest)).at(-1)!, "/channels/111/messages/..%2F..%2Fx")
    }),
  )

  it.effect("interaction answers: respond once (a second is refused), then edit the original", () =>
    Effect.gen(function* () {
      const { rest, api } = yield* setup
      const interaction = { id: "700", token: interactionToken, applicationId: "900" }
      yield* api.respondToInteraction(interaction, {
        type: InteractionResponseType.DeferredChannelMessageWithSource,
      })
      const twice = yield* Effect.flip(
        api.respondToInteraction(interaction, {
          type: InteractionResponseType.ChannelMessageWithSource,
          data: { content: "again" },
        }),
      )
      assert.strictEqual(twice._tag, "InvalidMessage")
      const edited = yield* api.editInteractionResponse(interaction, { content: "done", embeds: [embed] })
      assert.strictEqual(edited.content, "done")
      assert.deepStrictEqual(yield* rest.interactionResponses, [{ interactionId: "700", body: { type: 5 } }])
    }),
  )

  it.effect("neither the bot token nor an interaction token reaches a log, a span or an error", () =>
    Effect.gen(function* () {
      const texts: Array<string> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          const end = span.end.bind(span)
          span.end = (endTime, exit) => {
            texts.push(`${options.name} ${JSON.stringify([...span.attributes])}`)
            end(endTime, exit)
          }
          return span
        },
      })
      const logger = Logger.make(
        (options) => void texts.push(`${String(options.message)} ${Cause.pretty(options.cause)}`),
      )
      const { rest, api } = yield* setup
      const interaction = { id: "701", token: interactionToken, applicationId: "900" }
      yield* rest.failNext({ status: 503 })
      const errors = yield* Effect.gen(function* () {
        yield* api.respondToInteraction(interaction, {
          type: InteractionResponseType.ChannelMessageWithSource,
          data: { content: "hi" },
        })
        const twice = yield* Effect.flip(
          api.respondToInteraction(interaction, { type: InteractionResponseType.DeferredMessageUpdate }),
        )
        const noOriginal = yield* Effect.flip(
          api.editInteractionResponse(
            { applicationId: "900", token: `other-${interactionToken}` },
            { content: "x" },
          ),
        )
        yield* api.createMessage("111", { content: "traced" })
        return [twice, noOriginal]
      }).pipe(
        Effect.withTracer(tracer),
        Effect.provideService(HttpClient.TracerHeaderFilter, () => true),
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "All"),
        Effect.forkChild,
        Effect.tap(() => Settle.advance(10_000)),
        Effect.flatMap(Fiber.join),
      )
      for (const error of errors)
        texts.push(error.message, JSON.stringify(error), Cause.pretty(Cause.fail(error)))
      assert.isTrue(texts.some((t) => t.startsWith("DiscordRest.request")))
      assert.isTrue(
        texts.some((t) => t.includes("retry 1")),
        "the 503 retry was logged",
      )
      for (const text of texts) assert.notInclude(text, "SECRET", text)
    }),
  )
})
