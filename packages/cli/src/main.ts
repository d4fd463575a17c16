#!/usr/bin/env node
/**
 * The `vigil` command. Built with Effect's CLI module: `--help` on every command.
 *   vigil demo      the storm against the embedded fake gateway (the quick start)
 *   vigil connect   a real bot session (DISCORD_TOKEN)
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { GatewayInfo, Intents } from "@vigil/gateway"
import { Config, Console, Effect, Option, Redacted, Runtime } from "effect"
import { Command, Flag } from "effect/cli"
import * as Connect from "./Connect.ts"
import * as Demo from "./Demo.ts"
import { type Explainable, exitCodes, explain, MissingToken } from "./Explain.ts"
import * as Observability from "./Observability.ts"

const setExitCode = (code: number) =>
  Effect.sync(() => {
    process.exitCode = code
  })

/** Fatal errors end the app with one readable line and their own exit code. */
const report = (error: Explainable) => {
  const { line, code } = explain(error)
  return Console.error(`vigil: ${line}`).pipe(Effect.andThen(setExitCode(code)))
}
const explained = <A, R>(effect: Effect.Effect<A, Explainable, R>) => Effect.catch(effect, report)

/** Both commands: `/metrics` and `/health` on a port; OTLP comes from the `OTEL_*` environment. */
const observabilityFlags = {
  metricsPort: Flag.Int("metrics-port").pipe(
    Flag.withDescription("Serve /metrics (Prometheus text) and /health on this port"),
    Flag.optional,
  ),
  metricsHost: Flag.String("metrics-host").pipe(
    Flag.withDescription(
      "Address for --metrics-port (default 127.0.0.1; 0.0.0.0 to be scraped from other hosts)",
    ),
    Flag.optional,
  ),
}

const observed = (flags: {
  readonly metricsPort: Option.Option<number>
  readonly metricsHost: Option.Option<string>
}) =>
  Effect.provide(
    Observability.layer({
      metricsPort: Option.getOrUndefined(flags.metricsPort),
      metricsHost: Option.getOrUndefined(flags.metricsHost),
    }),
  )

const demo = Command.make(
  "demo",
  {
    shards: Flag.Int("shards").pipe(
      Flag.withDescription("Shards to run"),
      Flag.withDefault(Demo.defaults.shards),
    ),
    heartbeat: Flag.Int("heartbeat").pipe(
      Flag.withDescription("The fake gateway's heartbeat interval, ms"),
      Flag.withDefault(Demo.defaults.heartbeatMillis),
    ),
    burst: Flag.Int("burst").pipe(
      Flag.withDescription("Events per shard in the final burst"),
      Flag.withDefault(Demo.defaults.burst),
    ),
    reshardTo: Flag.Int("reshard-to").pipe(
      Flag.withDescription(
        "The shard count of the last step's reshard under load (default twice --shards; 0: none)",
      ),
      Flag.optional,
    ),
    ...observabilityFlags,
  },
  ({ shards, heartbeat, burst, reshardTo, ...flags }) =>
    Demo.run({ shards, heartbeatMillis: heartbeat, burst, reshardTo: Option.getOrUndefined(reshardTo) }).pipe(
      Effect.flatMap((summary) => setExitCode(summary.ok ? exitCodes.ok : exitCodes.invariant)),
      observed(flags),
      Effect.catchTag("MetricsPortUnavailable", report),
    ),
).pipe(
  Command.withDescription(
    "Run the embedded fake gateway through a storm (zombie, network flap, op 7, Invalid Session, restart, burst, then a reshard under load) and check that nothing was lost or repeated. Exits 0 only if every invariant held.",
  ),
)

const connect = Command.make(
  "connect",
  {
    intents: Flag.String("intents").pipe(
      Flag.filterMap(
        (text) => Option.fromNullishOr(Intents.parse(text)),
        (text) =>
          `unknown intents: ${text} (a bitfield, or GatewayIntentBits names such as Guilds,GuildMessages)`,
      ),
      Flag.withDescription("Gateway intents: a bitfield (513) or bit names (Guilds,GuildMessages)"),
      Flag.withDefault(513),
    ),
    shards: Flag.Int("shards").pipe(
      Flag.withDescription("Total shard count (default: Discord's recommendation)"),
      Flag.optional,
    ),
    compression: Flag.Literals("compression", ["none", "zlib-stream", "zstd-stream"]).pipe(
      Flag.withDescription("Transport compression"),
      Flag.withDefault("none"),
    ),
    quiet: Flag.Boolean("quiet").pipe(
      Flag.withDescription("Print status changes only, not every event"),
      Flag.withDefault(false),
    ),
    api: Flag.String("api").pipe(
      Flag.withDescription(
        `REST API base URL, version included (…/api/vN), default ${GatewayInfo.defaultApiBaseUrl}. Vigil asks <api>/gateway/bot where to connect: point it at a local gateway to test`,
      ),
      Flag.withDefault(GatewayInfo.defaultApiBaseUrl),
    ),
    sessionDir: Flag.String("session-dir").pipe(
      Flag.withDescription(
        "Keep sessions in this directory: a restarted process resumes them instead of identifying (default: in memory only)",
      ),
      Flag.optional,
    ),
    ...observabilityFlags,
  },
  ({ intents, shards, compression, quiet, api, sessionDir, ...flags }) =>
    Effect.gen(function* () {
      const token = yield* Config.Redacted("DISCORD_TOKEN").pipe(Effect.mapError(() => new MissingToken()))
      if (Redacted.value(token).trim() === "") return yield* new MissingToken()
      return yield* Connect.run({
        token,
        intents,
        shards: Option.getOrUndefined(shards),
        apiBaseUrl: api,
        compression,
        events: !quiet,
        sessionDir: Option.getOrUndefined(sessionDir),
      })
    }).pipe(observed(flags), explained),
).pipe(Command.withDescription("Run a real bot session (token from the DISCORD_TOKEN environment variable)."))

const vigil = Command.make("vigil").pipe(
  Command.withDescription("Vigil: an Effect-native Discord gateway client"),
  Command.withSubcommands([demo, connect]),
)

// Effect's runMain ends with 130 after SIGINT and SIGTERM alike; supervisors expect 128 + 15
// after SIGTERM, so remember which signal came.
let terminated = false
process.once("SIGTERM", () => {
  terminated = true
})
const teardown: Runtime.Teardown = (exit, onExit) =>
  Runtime.defaultTeardown(exit, (code) => onExit(terminated && code === 130 ? 143 : code))

vigil.pipe(
  Command.run({ version: "0.1.0" }),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({ teardown }),
)
