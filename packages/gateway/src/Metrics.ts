/**
 * Vigil's metrics, on `effect`'s `Metric`: whatever exports them (Prometheus text, OTLP)
 * reads the same registry. Every per-shard series carries a `shard` label (the only
 * high-cardinality one); the others are bounded. Recording is synchronous (`updateUnsafe`
 * against a context captured once), so the hot path costs a few map look-ups per batch of
 * dispatches, never an effect per event.
 */
import { Context, Effect, Metric, Scope } from "effect"
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

/**
 * Server-chosen label values (event types, close codes) are capped per shard: past
 * `maxLabelValues` distinct values, or for an over-long value, the series is `other`. A hostile
 * server cannot grow the registry without bound.
 */
export const maxLabelValues = 128
const maxLabelLength = 64

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

/**
 * The recorder of shard `shardId`. Sequence and queue depth are read when metrics are read
 * (no cost per event); those readers are removed when the scope closes. The state is one
 * series, of the current state (1), replaced on each change: a shard holds one series for
 * it, not one per state.
 */
export const forShard = Effect.fnUntraced(function* (shardId: number, gauges: ShardGauges) {
  if (!(yield* Enabled)) return disabled
  const context = yield* Effect.context<Scope.Scope>()
  const recorder = new ShardRecorder(String(shardId), context, gauges)
  yield* Scope.addFinalizer(
    Context.get(context, Scope.Scope),
    Effect.sync(() => recorder.remove()),
  )
  return recorder as ShardMetrics
})

/** A count the registry reads when metrics are read: recording adds to a number. */
interface Count {
  value: number
}

/**
 * One object per shard, its methods shared by all (an idle shard holds its few series and
 * no closure per method); every series but the state and the two gauges is made on first use.
 */
class ShardRecorder implements ShardMetrics {
  private currentState: ShardStateTag = "Connecting"
  private stateSeries: Registration
  private readonly registrations: Array<Registration>
  private made: Map<string, Map<string, unknown>> | undefined // series by name, then label value
  private rtt: Histogram | undefined // recorded on every heartbeat ACK: no registry look-up
  private sendWait: Metric.Histogram<number> | undefined

  private readonly shard: string
  private readonly context: Context.Context<Scope.Scope>

  constructor(shard: string, context: Context.Context<Scope.Scope>, gauges: ShardGauges) {
    this.shard = shard
    this.context = context
    this.stateSeries = this.registerState(this.currentState)
    const attributes = { shard }
    this.registrations = [
      Metric.registerUnsafe(
        Metric.gauge(names.sequence, { description: "last delivered sequence", attributes }),
        context,
        readOnly(() => gauges.sequence() ?? 0),
      ),
      Metric.registerUnsafe(
        Metric.gauge(names.queueDepth, { description: "dispatches waiting for the consumer", attributes }),
        context,
        readOnly(gauges.queueDepth),
      ),
    ]
  }

  remove(): void {
    this.stateSeries.remove()
    for (const r of this.registrations) r.remove()
  }

  private registerState(state: ShardStateTag): Registration {
    return Metric.registerUnsafe(
      Metric.gauge(names.state, {
        description: "1 for the shard's current state",
        attributes: { shard: this.shard, state },
      }),
      this.context,
      readOnly(() => 1),
    )
  }

  /**
   * Series `name` (label `label` = `value`, if given), made on first use by `make`.
   * Server-chosen values are capped per shard and name: past `maxLabelValues` distinct
   * values, or for an over-long one, the series is `other`.
   */
  private series<M>(
    name: keyof typeof counters,
    label: string | undefined,
    value: string,
    make: (attributes: Record<string, string>) => M,
  ): M {
    this.made ??= new Map()
    let byValue = this.made.get(name) as Map<string, M> | undefined
    if (byValue === undefined) {
      byValue = new Map()
      this.made.set(name, byValue)
    }
    const found = byValue.get(value)
    if (found !== undefined) return found
    const capped = label !== undefined && (byValue.size >= maxLabelValues || value.length > maxLabelLength)
    const existing = capped ? byValue.get(otherKey) : undefined
    if (existing !== undefined) return existing
    const attributes: Record<string, string> = { shard: this.shard }
    if (label !== undefined) attributes[label] = capped ? "other" : value
    const made = make(attributes)
    byValue.set(capped ? otherKey : value, made)
    return made
  }

  /** Adds one to a counter: the registry keeps it past the shard (totals of the process). */
  private bump(name: keyof typeof counters, label?: string, value = ""): void {
    this.series(name, label, value, (attributes) =>
      Metric.counter(names[name], { description: counters[name], attributes, incremental: true }),
    ).updateUnsafe(1, this.context)
  }

  /**
   * Dispatches by type: plain counts (the hot path adds to a number), read by the registry
   * when metrics are read; removed with the shard.
   */
  private events(type: string): Count {
    return this.series("events", "type", type, (attributes) => {
      const count: Count = { value: 0 }
      this.registrations.push(
        Metric.registerUnsafe(
          Metric.counter(names.events, { description: counters.events, attributes, incremental: true }),
          this.context,
          {
            get: () => ({ count: count.value, incremental: true }),
            update: () => {},
            modify: () => {},
          },
        ),
      )
      return count
    })
  }

  private histogram(name: "heartbeatRtt" | "sendWait", description: string): Metric.Histogram<number> {
    return Metric.histogram(names[name], {
      description,
      attributes: { shard: this.shard },
      boundaries: secondsBoundaries,
    })
  }

  state(tag: ShardStateTag): void {
    if (tag === this.currentState) return
    this.currentState = tag
    this.stateSeries.remove()
    this.stateSeries = this.registerState(tag)
  }
  latency(millis: number): void {
    if (this.rtt === undefined) {
      const rtt = new Histogram(secondsBoundaries)
      this.rtt = rtt
      this.registrations.push(
        Metric.registerUnsafe(
          Metric.histogram(names.heartbeatRtt, {
            description: "heartbeat round trip",
            attributes: { shard: this.shard },
            boundaries: secondsBoundaries,
          }),
          this.context,
          { get: () => rtt.state(), update: () => {}, modify: () => {} },
        ),
      )
    }
    this.rtt.record(millis / 1000)
  }
  dispatched(batch: ReadonlyArray<Protocol.Dispatch>): void {
    for (const dispatch of batch) this.events(Protocol.eventName(dispatch)).value++
  }
  waited(millis: number): void {
    this.sendWait ??= this.histogram("sendWait", "time a command waited for the send limiter")
    this.sendWait.updateUnsafe(millis / 1000, this.context)
  }
  refused(): void {
    this.bump("sendRefused")
  }
  connection(): void {
    this.bump("connections")
  }
  identified(): void {
    this.bump("identifies")
  }
  resumed(): void {
    this.bump("resumes")
  }
  ended(error: ConnectionError): void {
    this.bump("connectionErrors", "error", error._tag)
    if (error._tag === "ZombieDetected") this.bump("zombies")
    else if (error._tag === "InvalidSession") this.bump("invalidSessions")
    else if (error._tag === "DecodeError") this.bump("decodeErrors", "stage", error.stage)
    if ("code" in error && error.code !== undefined) this.bump("closes", "code", String(error.code))
  }
  warning(error: DecodeError | ServerMisbehaviour): void {
    if (error._tag === "DecodeError") this.bump("decodeErrors", "stage", error.stage)
    else this.bump("serverMisbehaviour", "kind", error.kind)
  }
}

/**
 * A histogram of one series, read by the registry when metrics are read (as `Metric.histogram`
 * reports it: cumulative buckets): recording is a few comparisons, with no look-up of the
 * series per value.
 */
class Histogram {
  private readonly boundaries: ReadonlyArray<number>
  private readonly counts: Uint32Array
  private count = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  constructor(boundaries: ReadonlyArray<number>) {
    this.boundaries = boundaries
    this.counts = new Uint32Array(boundaries.length)
  }

  record(value: number): void {
    const boundaries = this.boundaries
    let i = 0
    while (i < boundaries.length && value > boundaries[i]!) i++
    if (i < boundaries.length) this.counts[i]!++
    this.count++
    this.sum += value
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }

  state(): Metric.HistogramState {
    let cumulated = 0
    const buckets = this.boundaries.map((boundary, i): [number, number] => {
      cumulated += this.counts[i]!
      return [boundary, cumulated]
    })
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
  }
}

/** The capped series' key among a name's values (no label value has a NUL). */
const otherKey = "\u0000other"

interface Registration {
  readonly remove: () => void
}

/** The per-shard counters and what they count. */
const counters = {
  events: "dispatches received, by type",
  connections: "connection attempts",
  identifies: "sessions started (READY)",
  resumes: "sessions resumed (RESUMED)",
  invalidSessions: "Invalid Session (op 9) received",
  zombies: "connections closed for a missing heartbeat ACK",
  closes: "connections closed, by close code",
  connectionErrors: "connections ended, by error tag",
  decodeErrors: "decode errors, by stage",
  serverMisbehaviour: "server misbehaviour the connection survived, by kind",
  sendRefused: "sends skipped because the send window was full (a requested heartbeat)",
} as const

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
