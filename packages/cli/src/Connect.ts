/**
 * `vigil connect`: a real bot session. The token comes from DISCORD_TOKEN and is held as
 * `Redacted` from the moment it is read. Events and status changes are printed; a fatal
 * error becomes one line of explanation and its own exit code.
 */
import { ShardManager } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { Clock, Effect, Layer, type Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
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
}

export const run = (options: ConnectOptions, output: Screen.Output = Screen.stdout) =>
  Effect.scoped(
    Effect.gen(function* () {
      const s = Screen.style(output)
      const manager = yield* ShardManager.make({
        token: options.token,
        intents: options.intents,
        shardCount: options.shards,
        apiBaseUrl: options.apiBaseUrl,
        compression: options.compression,
      })
      yield* Effect.log(`running shards ${manager.shardIds.join(", ")} of ${manager.shardCount}`)
      if (options.events) {
        yield* Effect.forkScoped(
          Stream.runForEach(manager.events, ({ shardId, dispatch }) =>
            Effect.sync(() =>
              output.write(`${s.dim(`shard ${shardId}`)} #${dispatch.seq} ${dispatch.type}\n`),
            ),
          ),
        )
      } else {
        yield* Effect.forkScoped(Stream.runDrain(manager.events))
      }
      // Status lines when a shard's state changes (the same in a terminal and in a pipe).
      const screen = Screen.make({ ...output, isTTY: false })
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const health = yield* manager.health
            yield* screen.status(health.map((h) => StatusView.line(h, now, s, false)))
            yield* Effect.sleep(200)
          }),
        ),
      )
      return yield* manager.await
    }),
  ).pipe(Effect.provide(Layer.merge(NodeGateway.layer(), FetchHttpClient.layer)))
