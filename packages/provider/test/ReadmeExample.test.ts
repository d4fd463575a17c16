/**
 * The README's provider example ("The provider"), run against FakeGateway on 127.0.0.1. The
 * bot between the README markers below is the README's code, character for character: the
 * last test fails if the two drift apart.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { DiscordProvider, type Inbound } from "@vigil/provider"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Traffic from "@vigil/testing/Traffic"
import { Effect, Exit, Fiber, Redacted, Stream } from "effect"

// README:begin
// Answers every message that mentions the bot, for as long as the app runs.
const bot = Effect.gen(function* () {
  const discord = yield* DiscordProvider.DiscordProvider
  const answer = (m: Inbound.MessageEvent) =>
    m._tag === "MessageCreated" && m.mentionsBot
      ? discord.send(m.channelId, { content: "hi!", replyTo: m.id }).pipe(
          // A failed send (no permission, rate limited, Discord down…) must not stop the bot.
          Effect.catch((error) => Effect.logWarning(`no answer in ${m.channelId}: ${error.message}`)),
        )
      : Effect.void
  // A few at once: a channel waiting out its rate limit does not hold up the others.
  yield* Effect.forkScoped(Stream.runDrain(Stream.mapEffect(discord.messages, answer, { concurrency: 8 })))
  yield* discord.start
  yield* discord.await // until the app stops; fails only with a fatal error
}).pipe(
  // A refused token: 401 from GET /gateway/bot at start, or 4004 from the gateway later.
  Effect.catchTag("AuthenticationFailed", () => Effect.logError("Discord refused the token")),
  Effect.catchTag("DisallowedIntents", () => Effect.logError("enable the privileged intents")),
  Effect.scoped,
)
// README:end

const token = "readme-example-token-SECRET"
const botId = "1000000000000000001" // FakeGateway's bot user

const run = (gateway: FakeGateway.FakeGatewayService, clientToken = token) =>
  bot.pipe(
    Effect.provide(
      DiscordProvider.DiscordProvider.layer({
        token: Redacted.make(clientToken),
        intents: 513,
        apiBaseUrl: gateway.httpUrl,
      }),
    ),
  )

const mention = (n: number) => ({ ...Traffic.messageCreate(n), mentions: [{ id: botId, username: "bot" }] })

describe("README: the provider example", () => {
  it.live("answers mentions, and goes on answering after a send fails", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000, shards: 1 })
      const fiber = yield* Effect.forkChild(run(gateway))
      yield* gateway.awaitEntry((e) => e._tag === "Sent" && e.t === "READY") // what follows comes after it
      yield* gateway.failPosts({ status: 403 })
      yield* gateway.dispatch("all", "MESSAGE_CREATE", mention(1))
      yield* eventually(
        Effect.map(gateway.restRequests, (requests) => requests.some((r) => r.status === 403)),
        "the first answer refused (403)",
      )
      yield* gateway.dispatch("all", "MESSAGE_CREATE", { ...Traffic.messageCreate(2) }) // no mention
      yield* gateway.dispatch("all", "MESSAGE_CREATE", mention(3))
      yield* eventually(
        Effect.map(gateway.messages, (messages) => messages.length === 1),
        "the third message answered",
      )
      const [answered] = yield* gateway.messages
      assert.strictEqual(answered?.content, "hi!")
      assert.isDefined(answered)
      const reference = (answered!.body as { message_reference?: { message_id?: string } }).message_reference
      assert.strictEqual(reference?.message_id, mention(3).id, "a reply to the message")
      assert.isUndefined(fiber.pollUnsafe(), "the bot still runs")
      yield* Fiber.interrupt(fiber)
    }),
  )

  it.live("a refused token reaches its catchTag (401 from GET /gateway/bot): the bot ends handled", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, shards: 1 })
      const exit = yield* Effect.exit(run(gateway, "not-the-token").pipe(Effect.timeout("20 seconds")))
      assert.isTrue(Exit.isSuccess(exit), String(exit))
    }),
  )

  it("the README shows this very code", () => {
    const source = readFileSync(new URL(import.meta.url), "utf8")
    const example = source.slice(source.indexOf("// README:begin\n") + 16, source.indexOf("// README:end"))
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8")
    assert.isAbove(example.length, 500)
    assert.include(readme, example)
  })
})
