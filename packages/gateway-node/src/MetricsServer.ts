/**
 * A small HTTP server for operators: `GET /metrics` in Prometheus text (every metric of the
 * process's registry, Vigil's included) and `GET /health` (200 or 503 with a JSON body, from
 * the verdict the app gives). It lives as long as the layer's scope.
 */
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpRouter, type HttpServer, type HttpServerError, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"

export interface Health {
  readonly healthy: boolean
  /** Served as JSON: keep it free of secrets (a shard's status is). */
  readonly body: unknown
}

export interface MetricsServerOptions {
  readonly port: number
  /** Default `127.0.0.1`; `0.0.0.0` to be scraped from other hosts (e.g. in a container). */
  readonly host?: string | undefined
  /** The verdict `/health` serves; without it, `/health` answers 200 while the process runs. */
  readonly health?: Effect.Effect<Health> | undefined
}

const alive: Effect.Effect<Health> = Effect.succeed({ healthy: true, body: { status: "up" } })

const healthRoute = (health: Effect.Effect<Health>) =>
  HttpRouter.add(
    "GET",
    "/health",
    Effect.flatMap(health, (verdict) =>
      HttpServerResponse.json(verdict.body, { status: verdict.healthy ? 200 : 503 }),
    ).pipe(Effect.orElseSucceed(() => HttpServerResponse.empty({ status: 500 }))),
  )

export const layer = (
  options: MetricsServerOptions,
): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError> =>
  HttpRouter.serve(Layer.mergeAll(PrometheusMetrics.layerHttp(), healthRoute(options.health ?? alive)), {
    disableLogger: true,
    disableListenLog: true,
  }).pipe(
    Layer.provideMerge(
      NodeHttpServer.layer(createServer, { port: options.port, host: options.host ?? "127.0.0.1" }),
    ),
  )
