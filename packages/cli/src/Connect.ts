/**
 * `vigil connect`: a real bot session. The token comes from DISCORD_TOKEN and is held as
 * `Redacted` from the moment it is read. Events are printed, with a live status block (latency
 * included) in a terminal; a fatal error becomes one line of explanation and its own exit code.
 */
import { ServerText, SessionStore } from "@vigil/gateway"
import { NodeGateway, NodeSessionStore } from "@vigil/gateway-node"
import { DiscordProvider } from "@vigil/provider"
import { Effect, Layer, type Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import { SessionDirUnavailable } from "./Explain.ts"
import * as Observability from "./Observability.ts"
import * as Screen from "./Screen.ts"
import * as StatusView from "./StatusView.ts"

export interface ConnectOptions {
  readonly token: Redacted.Redacted<string>
  readonly intents: number
  /** Total shard count; undefined: Discord's recommendation. */
  readonly shards: number | undefined
  readonly apiBaseUrl: string | undefined
  readonly compression: "none" | "zlib-stream" | "zstd-stream"
  /** Print every dispatch (default) or only status changes. */
  readonly events: boolean
  /** Keep sessions here, so a restarted process resumes them; undefined: in memory only. */
  readonly sessionDir: string | undefined
}

const sessionStore = (
  directory: string | undefined,
): Layer.Layer<SessionStore.SessionStore, SessionDirUnavailable> =>
  directory === undefined
    ? SessionStore.SessionStore.layerMemory
    : NodeSessionStore.layerFileSystem(directory).pipe(
        Layer.catchTag("PlatformError", (error) =>
          Layer.effect(SessionStore.SessionStore)(
            Effect.fail(new SessionDirUnavailable({ directory, reason: error.message })),
          ),
        ),
      )

export const run = (options: ConnectOptions, output: Screen.Output = Screen.stdout) =>
  Effect.scoped(
    Effect.gen(function* () {
      const s = Screen.style(output)
      const discord = yield* DiscordProvider.make({
        token: options.token,
        intents: options.intents,
        shardCount: options.shards,
        apiBaseUrl: options.apiBaseUrl,
        compression: options.compression,
      })
      // In a terminal, a live status block (state, latency, counters) under the scrolling
      // events; piped, a status line only when a shard's state changes.
      const screen = Screen.make(output)
      // Hot streams: consume before starting, to see READY.
      yield* Effect.forkScoped(
        options.events
          ? Stream.runForEach(discord.events, ({ shardId, dispatch }) =>
              screen.log(`${s.dim(`shard ${shardId}`)} #${dispatch.seq} ${dispatch.type}`),
            )
          : Stream.runDrain(discord.events),
      )
      // The bot's readiness (every shard ready, the bot known: a restart that resumes gets no
      // READY) is announced once each time it is reached.
      let ready = false
      yield* Effect.forkScoped(
        Stream.runForEach(discord.healthChanges({ every: "200 millis" }), (health) =>
          Effect.gen(function* () {
            if (health.ready && !ready && health.botUser !== undefined) {
              const bot = ServerText.sanitize(
                `${health.botUser.username} (${health.botUser.id})`,
                options.token,
              )
              yield* screen.log(s.green(`ready as ${bot}`))
            }
            ready = health.ready
            yield* screen.status(health.shards.map((h) => StatusView.line(h, health.at, s, output.isTTY)))
          }),
        ),
      )
      yield* Observability.serveHealth(discord)
      yield* discord.start
      return yield* discord.await
    }),
  ).pipe(
    // Only this program closes the provider, after it is done with it.
    Effect.catchTag("ProviderClosed", () => Effect.void),
    // Provided first, so it is the store the provider finds (NodeGateway's is in memory).
    Effect.provide(sessionStore(options.sessionDir)),
    Effect.provide(Layer.merge(NodeGateway.layer(), FetchHttpClient.layer)),
  )
