/**
 * REST metrics and spans after a scripted FakeRest run under TestClock: requests by route
 * bucket and status, 429s by scope, retries by reason; one span per request named for its
 * route bucket, with no token (the bot's or an interaction's) in any series or span.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Metrics } from "@vigil/gateway"
import { Settle } from "@vigil/gateway/testing"
import { Rest, RestMetrics } from "@vigil/provider"
import * as FakeRest from "@vigil/testing/FakeRest"
import { InteractionResponseType } from "discord-api-types/v10"
import { Effect, Fiber, Metric, Redacted, Tracer } from "effect"
import { HttpClient } from "effect/http"

const token = "rest-metrics-token-SECRET-abc"
const interactionToken = "interaction-token-SECRET-def"
const messages = "/channels/{channel_id}/messages"

/** The count of one counter series; undefined if it was never recorded. */
const read = (name: string, attributes: Record<string, string>) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const found = snapshots.find(
      (s) => s.id === name && Object.entries(attributes).every(([k, v]) => s.attributes?.[k] === v),
    )
    return found?.type === "Counter" ? Number(found.state.count) : undefined
  })

describe("Rest metrics and spans", () => {
  it.effect("by route bucket and status, 429s global and per route, retries; spans without tokens", () =>
    Effect.gen(function* () {
      const spans: Array<string> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          const end = span.end.bind(span)
          span.end = (endTime, exit) => {
            spans.push(`${options.name} ${JSON.stringify([...span.attributes])}`)
            end(endTime, exit)
          }
          return span
        },
      })
      const rest = yield* FakeRest.make({ token })
      const api = yield* Rest.make({ token: Redacted.make(token), apiBaseUrl: rest.apiBaseUrl }).pipe(
        Effect.provideService(HttpClient.HttpClient, rest.client),
      )
      yield* rest.failNext({ status: 429, retryAfter: "1 second" })
      yield* rest.failNext({ status: 429, retryAfter: "1 second", global: true })
      yield* rest.failNext({ status: 503 })
      const run = yield* Effect.forkChild(
        Effect.gen(function* () {
          yield* api.sendMessage("111", "one") // 429 route, 429 global, 503, then 200
          yield* api.sendMessage("111", "two")
          yield* api.respondToInteraction(
            { id: "701", token: interactionToken },
            { type: InteractionResponseType.DeferredChannelMessageWithSource },
          )
        }).pipe(Effect.withTracer(tracer)),
      )
      yield* Settle.advance(10_000)
      yield* Fiber.join(run)

      const bucket = { method: "POST", route: messages }
      assert.strictEqual(yield* read(RestMetrics.names.requests, { ...bucket, status: "200" }), 2)
      assert.strictEqual(yield* read(RestMetrics.names.requests, { ...bucket, status: "429" }), 2)
      assert.strictEqual(yield* read(RestMetrics.names.requests, { ...bucket, status: "503" }), 1)
      assert.strictEqual(yield* read(RestMetrics.names.rateLimited, { ...bucket, scope: "route" }), 1)
      assert.strictEqual(yield* read(RestMetrics.names.rateLimited, { ...bucket, scope: "global" }), 1)
      assert.strictEqual(yield* read(RestMetrics.names.retries, { ...bucket, reason: "rate_limit" }), 2)
      assert.strictEqual(yield* read(RestMetrics.names.retries, { ...bucket, reason: "transient" }), 1)
      const callback = "/interactions/{interaction_id}/{interaction_token}/callback"
      assert.strictEqual(
        yield* read(RestMetrics.names.requests, { method: "POST", route: callback, status: "204" }),
        1,
      )

      const requestSpans = spans.filter((s) => s.startsWith("DiscordRest.request"))
      assert.strictEqual(requestSpans.length, 3, spans.join("\n"))
      assert.isTrue(requestSpans.some((s) => s.includes(callback)))
      assert.isTrue(requestSpans.every((s) => s.includes('"http.request.method","POST"')))
      const series = JSON.stringify(yield* Metric.snapshot)
      for (const text of [...spans, series]) assert.notInclude(text, "SECRET", text)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
  )

  it("the README's metric table lists exactly the metrics Vigil exports, gateway and REST", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8")
    // (The cluster's rows are @vigil/cluster's to check: ClusterCoordinator.test.)
    const rows = readme
      .split("\n")
      .filter((line) => line.startsWith("| `vigil_") && !line.startsWith("| `vigil_cluster_"))
    const listed = new Set(rows.flatMap((row) => row.split(" | ")[0]!.match(/vigil_[a-z_]+/g) ?? []))
    const exported = new Set([...Object.values(Metrics.names), ...Object.values(RestMetrics.names)])
    assert.deepStrictEqual([...listed].sort(), [...exported].sort())
  })
})
