/**
 * What the app exposes to operators: `/metrics` and `/health` when `--metrics-port` is given,
 * and OTLP export when the `OTEL_*` environment asks for it. Both live as long as the command.
 */
import { MetricsServer, Telemetry } from "@vigil/gateway-node"
import { Layer } from "effect"

export interface ObservabilityOptions {
  readonly metricsPort: number | undefined
  readonly metricsHost: string | undefined
}

export const layer = (options: ObservabilityOptions) =>
  Layer.mergeAll(
    options.metricsPort === undefined
      ? Layer.empty
      : MetricsServer.layer({ port: options.metricsPort, host: options.metricsHost }),
    Telemetry.layerOtlp({ serviceName: "vigil", serviceVersion: "0.1.0" }),
  )
