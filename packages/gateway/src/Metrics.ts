/**
 * Vigil's metrics, on `effect`'s `Metric`: whatever exports them (Prometheus text, OTLP)
 * reads the same registry. Every per-shard series carries a `shard` label (the only
 * high-cardinality one); the others are bounded. Recording is synchronous (`updateUnsafe`
 * against a context captured once), so the hot path costs a few map look-ups per batch of
 * dispatches, never an effect per event.
 */
import { Context, Effect, Metric, type Scope } from "effect"
import type { ConnectionError, DecodeError, ServerMisbehaviour } from "./GatewayError.ts"
import * as Protocol from "./Protocol.ts"
import type { SendRecorder } from "./SendLimiter.ts"

/** The states a shard can be in (`ShardState["_tag"]`); one `vigil_shard_state` series each. */
export const shardStates = [
  "Connecting",
  "WaitingForIdentify",
  "Identifying",
  "Resuming",
  "Ready",
  "BackingOff",
  "Stopped",
] as const
export type ShardStateTag = (typeof shardStates)[number]

// Durations are exported in seconds, Prometheus's base unit.
const secondsBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** The metric names and what they count, as exported (the README lists the same). */
export const names = {
  state: "vigil_shard_state",
  heartbeatRtt: "vigil_heartbeat_rtt_seconds",
  sequence: "vigil_shard_sequence",
  queueDepth: "vigil_shard_queue_depth",
  events: "vigil_events_total",
  connections: "vigil_connections_total",
  identifies: "vigil_identifies_total",
  resumes: "vigil_resumes_total",
  invalidSessions: "vigil_invalid_sessions_total",
  zombies: "vigil_zombies_total",
  closes: "vigil_closes_total",
  connectionErrors: "vigil_connection_errors_total",
  decodeErrors: "vigil_decode_errors_total",
  serverMisbehaviour: "vigil_server_misbehaviour_total",
  sendWait: "vigil_send_wait_seconds",
  sendRefused: "vigil_send_refused_total",
  identifyWait: "vigil_identify_wait_seconds",
  sessionStartRemaining: "vigil_session_start_remaining",
  reshards: "vigil_reshards_total",
} as const

const counter = (name: string, description: string, attributes: Metric.Metric.AttributeSet) =>
  Metric.counter(name, { description, attributes, incremental: true })

/**
 * Server-chosen label values (event types, close codes) are capped per shard: past
 * `maxLabelValues` distinct values, or for an over-long value, the series is `other`. A hostile
 * server cannot grow the registry without bound.
 */
export const maxLabelValues = 128
const maxLabelLength = 64

const labelled = <M>(make: (value: string) => M) => {
  const byValue = new Map<string, M>()
  let other: M | undefined
  return (value: string): M => {
    const found = byValue.get(value)
    if (found !== undefined) return found
    if (byValue.size >= maxLabelValues || value.length > maxLabelLength) {
      other ??= make("other")
      return other
    }
    const made = make(value)
    byValue.set(value, made)
    return made
  }
}

/** What a shard records; every method is synchronous and cheap. */
export interface ShardMetrics extends SendRecorder {
  readonly state: (tag: ShardStateTag) => void
  readonly latency: (millis: number) => void
  /** One call per batch of dispatches. */
  readonly dispatched: (batch: ReadonlyArray<Protocol.Dispatch>) => void
  readonly connection: () => void
  readonly identified: () => void
  readonly resumed: () => void
  /** A connection ended with this error: closes by code, errors by tag, zombies… */
  readonly ended: (error: ConnectionError) => void
  /** Something odd the connection survived: a payload it ignored, or the server misbehaving. */
  readonly warning: (error: DecodeError | ServerMisbehaviour) => void
}

export interface ShardGauges {
  readonly sequence: () => number | null
  readonly queueDepth: () => number
}

/**
 * Whether shards record metrics (default: yes). Off, a shard holds no series and records
 * nothing: `Layer.succeed(Metrics.Enabled, false)`. The bench compares the two.
 */
export const Enabled = Context.Reference<boolean>("@vigil/gateway/Metrics/Enabled", {
  defaultValue: () => true,
})

const disabled: ShardMetrics = {
  state: () => {},
  latency: () => {},
  dispatched: () => {},
  connection: () => {},
  identified: () => {},
  resumed: () => {},
  ended: () => {},
  warning: () => {},
  waited: () => {},
  refused: () => {},
}

/** Made on first use: an idle shard holds only the series it has recorded. */
const lazy = <M>(make: () => M) => {
  let made: M | undefined
  return (): M => {
    made ??= make()
    return made
  }
}

/**
 * The recorder of shard `shardId`. Sequence and queue depth are read when metrics are read
 * (no cost per event); those readers are removed when the scope closes. The state is one
 * series, of the current state (1), replaced on each change: a shard holds one series for
 * it, not one per state.
 */
export const forShard = Effect.fnUntraced(function* (shardId: number, gauges: ShardGauges) {
  if (!(yield* Enabled)) return disabled
  const context = yield* Effect.context<Scope.Scope>()
  const shard = String(shardId)
  const attrs = { shard }

  const registerState = (state: ShardStateTag) =>
    Metric.registerUnsafe(
      Metric.gauge(names.state, {
        description: "1 for the shard's current state",
        attributes: { shard, state },
      }),
      context,
      readOnly(() => 1),
    )
  let currentState: ShardStateTag = "Connecting"
  let stateSeries = registerState(currentState)
  const registrations = [
    Metric.registerUnsafe(
      Metric.gauge(names.sequence, { description: "last delivered sequence", attributes: attrs }),
      context,
      readOnly(() => gauges.sequence() ?? 0),
    ),
    Metric.registerUnsafe(
      Metric.gauge(names.queueDepth, {
        description: "dispatches waiting for the consumer",
        attributes: attrs,
      }),
      context,
      readOnly(gauges.queueDepth),
    ),
  ]
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      stateSeries.remove()
      for (const r of registrations) r.remove()
    }),
  )

  const bump = (metric: Metric.Counter<number>, by = 1) => metric.updateUnsafe(by, context)
  const rtt = lazy(() =>
    Metric.histogram(names.heartbeatRtt, {
      description: "heartbeat round trip",
      attributes: attrs,
      boundaries: secondsBoundaries,
    }),
  )
  const sendWait = lazy(() =>
    Metric.histogram(names.sendWait, {
      description: "time a command waited for the send limiter",
      attributes: attrs,
      boundaries: secondsBoundaries,
    }),
  )
  const sendRefused = lazy(() =>
    counter(
      names.sendRefused,
      "sends skipped because the send window was full (a requested heartbeat)",
      attrs,
    ),
  )
  const connections = lazy(() => counter(names.connections, "connection attempts", attrs))
  const identifies = lazy(() => counter(names.identifies, "sessions started (READY)", attrs))
  const resumes = lazy(() => counter(names.resumes, "sessions resumed (RESUMED)", attrs))
  const invalidSessions = lazy(() => counter(names.invalidSessions, "Invalid Session (op 9) received", attrs))
  const zombies = lazy(() => counter(names.zombies, "connections closed for a missing heartbeat ACK", attrs))
  // Dispatches by type: plain per-shard counts (the hot path adds to a number), read by the
  // registry when metrics are read; removed with the shard.
  const events = labelled((type) => {
    const count = { value: 0 }
    registrations.push(
      Metric.registerUnsafe(counter(names.events, "dispatches received, by type", { shard, type }), context, {
        get: () => ({ count: count.value, incremental: true }),
        update: () => {},
        modify: () => {},
      }),
    )
    return count
  })
  const closes = labelled((code) =>
    counter(names.closes, "connections closed, by close code", { shard, code }),
  )
  const errors = labelled((error) =>
    counter(names.connectionErrors, "connections ended, by error tag", { shard, error }),
  )
  const decodeErrors = labelled((stage) =>
    counter(names.decodeErrors, "decode errors, by stage", { shard, stage }),
  )
  const misbehaviours = labelled((kind) =>
    counter(names.serverMisbehaviour, "server misbehaviour the connection survived, by kind", {
      shard,
      kind,
    }),
  )

  return {
    state: (tag) => {
      if (tag === currentState) return
      currentState = tag
      stateSeries.remove()
      stateSeries = registerState(tag)
    },
    latency: (millis) => rtt().updateUnsafe(millis / 1000, context),
    dispatched: (batch) => {
      for (const dispatch of batch) events(Protocol.eventName(dispatch)).value++
    },
    waited: (millis) => sendWait().updateUnsafe(millis / 1000, context),
    refused: () => bump(sendRefused()),
    connection: () => bump(connections()),
    identified: () => bump(identifies()),
    resumed: () => bump(resumes()),
    ended: (error) => {
      bump(errors(error._tag))
      if (error._tag === "ZombieDetected") bump(zombies())
      else if (error._tag === "InvalidSession") bump(invalidSessions())
      else if (error._tag === "DecodeError") bump(decodeErrors(error.stage))
      if ("code" in error && error.code !== undefined) bump(closes(String(error.code)))
    },
    warning: (error) =>
      bump(error._tag === "DecodeError" ? decodeErrors(error.stage) : misbehaviours(error.kind)),
  } satisfies ShardMetrics
})

const readOnly = (get: () => number): Metric.Metric.Hooks<number, Metric.GaugeState<number>> => ({
  get: () => ({ value: get() }),
  update: () => {},
  modify: () => {},
})

/** Process-wide identify metrics, recorded by `IdentifyThrottle`. */
export const identifyWait = Metric.histogram(names.identifyWait, {
  description: "time an Identify waited for its turn (bucket window, daily budget)",
  boundaries: secondsBoundaries,
})
export const sessionStartRemaining = Metric.gauge(names.sessionStartRemaining, {
  description: "identifies left in the daily session_start_limit",
})

/** The outcomes a reshard ends with; one `vigil_reshards_total` series each. */
export type ReshardOutcome = "completed" | "refused" | "rolled-back"

/** Reshards ended, by trigger (`explicit`, `4011`, `periodic`) and outcome; recorded by `ShardManager`. */
export const reshards = (trigger: string, outcome: ReshardOutcome) =>
  Metric.counter(names.reshards, {
    description: "reshards ended, by trigger and outcome",
    attributes: { trigger, outcome },
    incremental: true,
  })
