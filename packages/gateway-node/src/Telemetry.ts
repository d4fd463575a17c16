/**
 * OTLP export of Vigil's spans, logs and metrics when the environment asks for it
 * (`OTEL_EXPORTER_OTLP_ENDPOINT`, and the other `OTEL_*` variables effect's `Otlp` reads);
 * without an endpoint the layer does nothing. JSON over HTTP, with the runtime's `fetch`.
 */
import { ConfigProvider, Effect, Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import { Otlp, type OtlpExporter, OtlpSerialization } from "effect/observability"

export interface TelemetryOptions {
  /** Default `vigil`; `OTEL_SERVICE_NAME` takes precedence. */
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
}

// The OpenTelemetry spec's default exporter is `otlp`; effect's reader defaults to none, so an
// endpoint alone would export nothing. `OTEL_*_EXPORTER=none` still turns a signal off.
const otlpByDefault = ConfigProvider.fromEnvRecord({
  OTEL_TRACES_EXPORTER: "otlp",
  OTEL_METRICS_EXPORTER: "otlp",
  OTEL_LOGS_EXPORTER: "otlp",
})

export const layerOtlp = (options: TelemetryOptions = {}): Layer.Layer<OtlpExporter.Flusher> =>
  Layer.unwrap(
    Effect.map(ConfigProvider.ConfigProvider, (provider) =>
      Otlp.layerFromConfig({
        resource: { serviceName: options.serviceName ?? "vigil", serviceVersion: options.serviceVersion },
      }).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.orElse(provider, otlpByDefault))),
        Layer.provide(OtlpSerialization.layerJson),
        Layer.provide(FetchHttpClient.layer),
      ),
    ),
  )
