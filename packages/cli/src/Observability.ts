/**
 * What the app exposes to operators: `/metrics` and `/health` when `--metrics-port` is given,
 * and OTLP export when the `OTEL_*` environment asks for it. Both live as long as the command.
 */
import { MetricsServer, Telemetry } from "@vigil/gateway-node"
import { type DiscordProvider, Health } from "@vigil/provider"
import { Context, Effect, Layer } from "effect"
import { MetricsPortUnavailable } from "./Explain.ts"

export interface ObservabilityOptions {
  readonly metricsPort: number | undefined
  readonly metricsHost: string | undefined
}

/** What `/health` reads: the provider's snapshot. */
export type HealthSource = Pick<DiscordProvider.DiscordProviderService, "health">

/**
 * Where `/health` finds its verdict: the server starts before the command makes its provider,
 * so the command hands the provider over once it has one (`serve`).
 */
export class AppHealth extends Context.Service<
  AppHealth,
  { readonly serve: (provider: HealthSource) => Effect.Effect<void> }
>()("@vigil/cli/AppHealth") {}

/** Hands `provider` to `/health`, if the app serves one. */
export const serveHealth = (provider: HealthSource) =>
  Effect.flatMap(Effect.serviceOption(AppHealth), (found) =>
    found._tag === "Some" ? found.value.serve(provider) : Effect.void,
  )

/** Up and degraded (a shard reconnecting) answer 200; down (stopped, fatal) 503; with the snapshot. */
const healthOf = (provider: HealthSource | undefined) =>
  provider === undefined
    ? Effect.succeed({ healthy: false, body: { status: "starting" } })
    : Effect.map(provider.health, (health) => {
        const status = Health.verdict(health)
        return { healthy: status !== "down", body: { status, ...health } }
      })

export const layer = (options: ObservabilityOptions) => {
  const telemetry = Telemetry.layerOtlp({ serviceName: "vigil", serviceVersion: "0.1.0" })
  const port = options.metricsPort
  if (port === undefined) return telemetry
  let provider: HealthSource | undefined
  const server = MetricsServer.layer({
    port,
    host: options.metricsHost,
    health: Effect.suspend(() => healthOf(provider)),
  }).pipe(
    Layer.catchTag("ServeError", (error) =>
      Layer.effectDiscard(
        Effect.fail(
          new MetricsPortUnavailable({
            port,
            reason: error.cause instanceof Error ? error.cause.message : String(error.cause),
          }),
        ),
      ),
    ),
  )
  const health = Layer.succeed(AppHealth)({
    serve: (served) =>
      Effect.sync(() => {
        provider = served
      }),
  })
  return Layer.mergeAll(server, health, telemetry)
}
