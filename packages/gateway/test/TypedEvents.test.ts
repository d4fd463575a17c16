/**
 * Discord's data, typed by discord-api-types. Much of this file is checked by the compiler
 * (`tsc -b` runs in the test command): a dispatch narrows by `type` without casts, events
 * discord-api-types does not know still arrive with `data: unknown`, and each
 * `@ts-expect-error` line is a wrong use the types must refuse. The README's typed-events
 * sample (`readme/typedEvents.ts`) runs against the scripted gateway.
 */
import { assert, describe, it } from "@effect/vitest"
import { IdentifyThrottle, Intents, Protocol, SessionStore, type Shard, ShardManager } from "@vigil/gateway"
import { ScriptedGateway, Settle } from "@vigil/gateway/testing"
import { PresenceUpdateStatus } from "discord-api-types/v10"
import { Effect, Layer, Logger, Random, Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import { logMessages } from "./readme/typedEvents.ts"

const env = Layer.mergeAll(
  ScriptedGateway.ScriptedGateway.layer({ heartbeatInterval: 41_250 }),
  SessionStore.SessionStore.layerMemory,
  IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
  FetchHttpClient.layer, // not called: the manager gets its /gateway/bot answer
  Layer.succeed(Random.Random)({ nextDoubleUnsafe: () => 0.5, nextIntUnsafe: () => 0 }),
)

const author = { id: "5", username: "ada", discriminator: "0", global_name: null, avatar: null }

// Compile-time checks: never run, only typechecked.
const typeChecks = (d: Protocol.Dispatch, shard: Shard.Shard) => {
  if (d.type === "MESSAGE_CREATE") {
    const content: string = d.data.content
    const channel: string = d.data.channel_id
    void [content, channel]
  }
  if (d.type === "GUILD_MEMBERS_CHUNK") {
    const count: number = d.data.chunk_count
    void count
  }
  if (d.type === "RATE_LIMITED") {
    const retryAfter: number = d.data.retry_after
    void retryAfter
  }
  if (d.type !== "MESSAGE_CREATE" && d.type !== "READY") {
    // @ts-expect-error the data of any other event is not a message
    void d.data.content
  }
  // @ts-expect-error a misspelt event name matches nothing
  if (d.type === "MESSAGE_CREAT") void d
  // @ts-expect-error intents are bits, not names
  void ({ intents: ["Guilds"] } satisfies Pick<Shard.ShardConfig, "intents">)
  // @ts-expect-error a presence has a status Discord knows
  void shard.updatePresence({ since: null, activities: [], status: "busy", afk: false })
  // @ts-expect-error a voice state names its channel (null to leave)
  void shard.updateVoiceState({ guild_id: "1", self_mute: false, self_deaf: false })
  const members = Effect.map(shard.requestGuildMembers({ guildId: "1", query: "" }), (result) =>
    result.members.map((member) => member.user.id),
  )
  const withBits: Shard.ShardConfig = {
    token: Redacted.make("t"),
    intents: [Intents.GatewayIntentBits.Guilds, Intents.GatewayIntentBits.GuildMembers],
    shard: [0, 1],
    presence: { since: null, activities: [], status: PresenceUpdateStatus.DoNotDisturb, afk: false },
  }
  return [members, withBits]
}
void typeChecks

describe("typed Discord data", () => {
  it.effect("the README sample narrows events by name; unknown events still arrive, untyped", () =>
    Effect.gen(function* () {
      const logs: Array<string> = []
      const server = yield* ScriptedGateway.ScriptedGateway
      const manager = yield* ShardManager.make({
        token: Redacted.make("typed-events-token"),
        intents: [Intents.GatewayIntentBits.Guilds, Intents.GatewayIntentBits.GuildMessages],
        gatewayBot: {
          url: "memory://gateway",
          shards: 1,
          session_start_limit: { total: 1000, remaining: 1000, reset_after: 86_400_000, max_concurrency: 1 },
        },
      })
      const names: Array<string> = []
      const named = Stream.tap(manager.events, ({ dispatch }) =>
        Effect.sync(() => void names.push(Protocol.eventName(dispatch))),
      )
      yield* Effect.forkChild(
        logMessages(named).pipe(
          Effect.provide(Logger.layer([Logger.make((options) => void logs.push(String(options.message)))])),
        ),
      )
      yield* Settle.settle
      yield* server.emit("MESSAGE_CREATE", { id: "9", channel_id: "42", author, content: "hello" })
      yield* server.emit("SOMETHING_NEW", { whatever: true })
      yield* Settle.settle
      assert.deepStrictEqual(logs, ["shard 0: ready as vigil", "ada: hello"])
      assert.deepStrictEqual(names, ["READY", "MESSAGE_CREATE", "SOMETHING_NEW"])
    }).pipe(Effect.provide(env)),
  )
})
