/**
 * The REST client's metrics, on `effect`'s `Metric` beside the gateway's (one registry, one
 * exporter). Labels are the route bucket (method and route template, never a path: ids and
 * interaction tokens stay out) and what happened; all bounded. REST is not the hot path: an
 * effect per request is fine here.
 */
import { Metric } from "effect"

export const names = {
  requests: "vigil_rest_requests_total",
  rateLimited: "vigil_rest_rate_limited_total",
  retries: "vigil_rest_retries_total",
} as const

/** Past this many distinct route templates (an app passing paths as routes), the label is `other`. */
export const maxRoutes = 128

const count = (name: string, description: string, attributes: Record<string, string>) =>
  Metric.update(Metric.counter(name, { description, attributes, incremental: true }), 1)

export interface RouteBucket {
  readonly method: string
  readonly route: string
}

/** A REST client's recorder; each client caps its own route labels. */
export const make = () => {
  const seen = new Set<string>()
  const routeLabel = (route: string): string => {
    if (seen.has(route)) return route
    if (seen.size >= maxRoutes || route.length > 128) return "other"
    seen.add(route)
    return route
  }
  const bucketAttributes = (bucket: RouteBucket) => ({
    method: bucket.method,
    route: routeLabel(bucket.route),
  })
  return {
    /** One HTTP attempt's outcome: its status, or `network` / `timeout` when no answer came. */
    request: (bucket: RouteBucket, status: number | "network" | "timeout") =>
      count(names.requests, "REST requests made (each attempt), by route bucket and status", {
        ...bucketAttributes(bucket),
        status: String(status),
      }),
    /** A 429: `global` for the bot-wide limit, `route` for the bucket's own. */
    rateLimited: (bucket: RouteBucket, global: boolean) =>
      count(names.rateLimited, "REST 429 answers, by route bucket and scope", {
        ...bucketAttributes(bucket),
        scope: global ? "global" : "route",
      }),
    /** A request tried again: after a 429 (`rate_limit`) or a 5xx / network failure (`transient`). */
    retry: (bucket: RouteBucket, reason: "rate_limit" | "transient") =>
      count(names.retries, "REST requests tried again, by route bucket and reason", {
        ...bucketAttributes(bucket),
        reason,
      }),
  }
}
