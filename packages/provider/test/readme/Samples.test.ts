/**
 * The README's provider sample ("The provider"), run as a user runs it: `node bot.ts` against
 * FakeGateway on 127.0.0.1. `scripts/readme.ts` keeps the README's code block byte-identical
 * to that file.
 */
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as NodeProgram from "@vigil/testing/NodeProgram"
import * as Traffic from "@vigil/testing/Traffic"
import { Effect } from "effect"

/** The samples run the workspace's sources, not the built packages. */
const sources = { conditions: ["@vigil/source"] }

const bot = fileURLToPath(new URL("bot.ts", import.meta.url))
const token = "readme-example-token-SECRET"
const botId = "1000000000000000001" // FakeGateway's bot user

const mention = (n: number) => ({ ...Traffic.messageCreate(n), mentions: [{ id: botId, username: "bot" }] })

describe("README: the provider sample", () => {
  it.live("answers mentions, goes on answering after a send fails, and stops on SIGTERM", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000, shards: 1 })
      const program = yield* NodeProgram.start(
        bot,
        {
          DISCORD_TOKEN: token,
          DISCORD_API_URL: gateway.httpUrl,
        },
        sources,
      )
      yield* gateway.awaitEntry((e) => e._tag === "Sent" && e.t === "READY") // what follows comes after it
      yield* gateway.failPosts({ status: 403 })
      yield* gateway.dispatch("all", "MESSAGE_CREATE", mention(1))
      yield* eventually(
        Effect.map(gateway.restRequests, (requests) => requests.some((r) => r.status === 403)),
        "the first answer refused (403)",
        "20 seconds",
      )
      yield* gateway.dispatch("all", "MESSAGE_CREATE", { ...Traffic.messageCreate(2) }) // no mention
      yield* gateway.dispatch("all", "MESSAGE_CREATE", mention(3))
      yield* eventually(
        Effect.map(gateway.messages, (messages) => messages.length === 1),
        "the third message answered",
        "20 seconds",
      )
      const [answered] = yield* gateway.messages
      assert.isDefined(answered)
      assert.strictEqual(answered!.content, "hi!")
      const reference = (answered!.body as { message_reference?: { message_id?: string } }).message_reference
      assert.strictEqual(reference?.message_id, mention(3).id, "a reply to the message")
      assert.include(program.stdout(), "no answer in", "the failed send logged")

      program.kill("SIGTERM")
      const exited = yield* program.exited.pipe(Effect.timeout("20 seconds"))
      assert.isNull(exited.signal, "runMain handled the signal")
      assert.notInclude(exited.stdout + exited.stderr, token)
    }),
  )

  it.live("a refused token reaches its catchTag (401 from GET /gateway/bot): the bot ends handled", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, shards: 1 })
      const program = yield* NodeProgram.start(
        bot,
        {
          DISCORD_TOKEN: "not-the-token",
          DISCORD_API_URL: gateway.httpUrl,
        },
        sources,
      )
      const exited = yield* program.exited.pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(exited.code, 0, exited.stderr)
      assert.include(exited.stdout + exited.stderr, "Discord refused the token")
    }),
  )
})
