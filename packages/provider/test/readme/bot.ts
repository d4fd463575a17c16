import { NodeRuntime } from "@effect/platform-node"
import { DiscordProvider, type Inbound } from "@vigil/provider"
import { Effect, Layer, Stream } from "effect"

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

// The token from DISCORD_TOKEN (DISCORD_API_URL and DISCORD_INTENTS too, if set), read
// through Config; GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT unless DISCORD_INTENTS says
// otherwise; Node's WebSocket transport and fetch underneath.
const discord = DiscordProvider.layerConfig({ intents: 33281 }).pipe(
  Layer.provide(DiscordProvider.layerNodeRequirements()),
)

bot.pipe(Effect.provide(discord), NodeRuntime.runMain)
