/**
 * The properties every run of Vigil must keep, as reusable checks. Each returns the
 * violations it finds (empty when the invariant holds), so a test or a chaos run can report
 * all of them at once, with enough detail to replay the failing case.
 */
import { Protocol, Transport } from "@vigil/gateway"
import type { MemoryPeer } from "@vigil/gateway/testing/MemoryTransport"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Layer, Logger, type Scope, Tracer } from "effect"
import * as Traffic from "./Traffic.ts"

export interface Violation {
  readonly invariant: string
  readonly detail: string
}

/** A dispatch as the server produced it. */
export interface Produced {
  readonly s: number
  readonly t: string
  readonly d: unknown
}

const sessionOf = (type: string, data: unknown): string | undefined =>
  type === "READY" ? String((data as { session_id?: unknown } | null)?.session_id) : undefined

/** Splits a dispatch log into sessions, each starting at its READY. */
const bySession = <A>(
  items: ReadonlyArray<A>,
  read: (a: A) => { type: string; data: unknown; seq: number },
) => {
  const sessions = new Map<string, Array<number>>()
  const order: Array<string> = []
  let current: Array<number> | undefined
  for (const item of items) {
    const { type, data, seq } = read(item)
    const id = sessionOf(type, data)
    if (id !== undefined) {
      current = []
      sessions.set(id, current)
      order.push(id)
    }
    current?.push(seq)
  }
  return { sessions, order }
}

/**
 * Every dispatch the server produced reaches the consumer exactly once and in order.
 * A session that ended (identify afresh) may stop short: the consumer then has a prefix of
 * it, never a gap or a repeat. The newest session must be complete when `settled`.
 */
export const exactlyOnce = (
  produced: ReadonlyArray<Produced>,
  consumed: ReadonlyArray<Protocol.Dispatch>,
  options: { readonly settled: boolean },
): Array<Violation> => {
  const violations: Array<Violation> = []
  const server = bySession(produced, (e) => ({ type: e.t, data: e.d, seq: e.s }))
  const client = bySession(consumed, (e) => ({ type: Protocol.eventName(e), data: e.data, seq: e.seq }))
  if (consumed.length > 0 && sessionOf(Protocol.eventName(consumed[0]!), consumed[0]!.data) === undefined) {
    violations.push({ invariant: "exactly-once", detail: `first event is ${consumed[0]!.type}, not READY` })
  }
  for (const id of client.order) {
    const got = client.sessions.get(id)!
    const sent = server.sessions.get(id)
    if (!sent) {
      violations.push({ invariant: "exactly-once", detail: `session ${id} was never produced` })
      continue
    }
    const prefix = sent.slice(0, got.length)
    if (got.length > sent.length || got.some((seq, i) => seq !== prefix[i])) {
      violations.push({
        invariant: "exactly-once",
        detail: `session ${id}: consumed [${got.join(",")}] is not a prefix of produced [${sent.join(",")}]`,
      })
    }
  }
  const newest = server.order.at(-1)
  if (options.settled && newest !== undefined) {
    const got = client.sessions.get(newest) ?? []
    const sent = server.sessions.get(newest)!
    if (got.length !== sent.length) {
      violations.push({
        invariant: "exactly-once",
        detail: `newest session ${newest}: ${got.length} of ${sent.length} events delivered`,
      })
    }
  }
  return violations
}

/** No write reached a connection after it closed: no stale heartbeat, no stale command. */
export const noLateSends = (peers: ReadonlyArray<MemoryPeer>): Array<Violation> =>
  peers
    .filter((p) => p.lateSends.length > 0)
    .map((p) => ({
      invariant: "no-send-after-close",
      detail: `connection ${p.id}: ${p.lateSends.length} write(s) after close, ops ${p.lateSends.map((f) => f.op).join(",")}`,
    }))

/** At most `limit` sockets were ever open at once (one per shard). */
export const atMostOpen = (maxOpen: number, limit: number): Array<Violation> =>
  maxOpen > limit
    ? [{ invariant: "one-socket-per-shard", detail: `${maxOpen} sockets were open at once` }]
    : []

/** After shutdown nothing is open. */
export const nothingOpen = (open: number): Array<Violation> =>
  open > 0 ? [{ invariant: "clean-shutdown", detail: `${open} socket(s) still open after shutdown` }] : []

/** The secret never appears in anything captured. */
export const secretNeverLeaked = (secret: string, captured: ReadonlyArray<string>): Array<Violation> =>
  captured
    .filter((text) => text.includes(secret))
    .map((text) => ({
      invariant: "token-never-leaked",
      // Every occurrence: the report itself must not print the secret.
      detail: `found in: ${text.replaceAll(secret, "<TOKEN>").slice(0, 200)}`,
    }))

/**
 * No more than one connection attempt per second, sustained: at most N + 1 attempts in any
 * window of N seconds (half-open), counting only attempts after the first `graceMillis`.
 * `attempts` are instants in milliseconds, in any order.
 */
export const connectionRate = (
  attempts: ReadonlyArray<number>,
  options: { readonly graceMillis?: number | undefined } = {},
): Array<Violation> => {
  const sorted = [...attempts].sort((a, b) => a - b)
  const from = (sorted[0] ?? 0) + (options.graceMillis ?? 0)
  const times = sorted.filter((t) => t >= from)
  let worst: { count: number; span: number; allowed: number } | undefined
  for (let i = 0; i < times.length; i++) {
    for (let j = i + 1; j < times.length; j++) {
      const span = times[j]! - times[i]!
      const count = j - i + 1
      const allowed = Math.floor(span / 1000) + 2
      if (count > allowed && (worst === undefined || count - allowed > worst.count - worst.allowed)) {
        worst = { count, span, allowed }
      }
    }
  }
  return worst === undefined
    ? []
    : [
        {
          invariant: "at-most-one-attempt-per-second",
          detail: `${worst.count} connection attempts within ${worst.span} ms (at most ${worst.allowed})`,
        },
      ]
}

/**
 * At most `limit` frames in any window of `windowMillis` on one connection: Discord's 120
 * commands per 60 s, heartbeats included (over it the server closes with 4008).
 */
export const sendRate = (
  connection: number,
  sentAt: ReadonlyArray<number>,
  limit: { readonly frames: number; readonly windowMillis: number },
): Array<Violation> => {
  const times = [...sentAt].sort((a, b) => a - b)
  for (let i = limit.frames; i < times.length; i++) {
    const span = times[i]! - times[i - limit.frames]!
    if (span < limit.windowMillis) {
      return [
        {
          invariant: "send-limit",
          detail: `connection ${connection}: ${limit.frames + 1} frames within ${span} ms (at most ${limit.frames} per ${limit.windowMillis} ms)`,
        },
      ]
    }
  }
  return []
}

/** After a fatal close (at `fatalAt`), no connection was attempted again. */
export const noConnectionAfterFatal = (
  attempts: ReadonlyArray<number>,
  fatalAt: number,
): Array<Violation> => {
  const later = attempts.filter((t) => t > fatalAt)
  return later.length === 0
    ? []
    : [
        {
          invariant: "fatal-means-stop",
          detail: `${later.length} connection attempt(s) after the fatal close, the first ${later[0]! - fatalAt} ms after it`,
        },
      ]
}

/** The heap never grew more than `limitBytes` above `baseline` (peak as sampled by `heapPeak`). */
export const heapBounded = (baseline: number, peak: number, limitBytes: number): Array<Violation> =>
  peak - baseline > limitBytes
    ? [
        {
          invariant: "bounded-memory",
          detail: `heap grew by ${mib(peak - baseline)} MiB, over the ${mib(limitBytes)} MiB allowed`,
        },
      ]
    : []

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)

/**
 * Samples the heap in use every `everyMillis` while the scope lasts (a garbage collection
 * may come between samples; a runaway allocation does not hide between two of them).
 */
export const heapPeak = (
  everyMillis = 10,
): Effect.Effect<{ readonly peak: () => number }, never, Scope.Scope> =>
  Effect.gen(function* () {
    let peak = process.memoryUsage().heapUsed
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.andThen(
          Effect.sleep(everyMillis),
          Effect.sync(() => {
            peak = Math.max(peak, process.memoryUsage().heapUsed)
          }),
        ),
      ),
    )
    return { peak: () => Math.max(peak, process.memoryUsage().heapUsed) }
  })

/**
 * Every pending command settles (succeeds, or fails with a typed error) within `within`:
 * none hangs, none dies. Each fiber runs a command; `label` names it in the report.
 */
export const commandsSettle = <A, E>(
  commands: ReadonlyArray<{ readonly label: string; readonly fiber: Fiber.Fiber<A, E> }>,
  within: Duration.Input,
): Effect.Effect<Array<Violation>> =>
  Effect.map(
    Effect.forEach(
      commands,
      ({ label, fiber }) =>
        Fiber.await(fiber).pipe(
          Effect.timeoutOrElse({ duration: within, orElse: () => Effect.succeed(undefined) }),
          Effect.map((exit): Violation | undefined =>
            exit === undefined
              ? {
                  invariant: "commands-settle",
                  detail: `${label} still pending after ${Duration.toMillis(within)} ms`,
                }
              : Exit.isFailure(exit) && Cause.hasDies(exit.cause)
                ? { invariant: "commands-settle", detail: `${label} died: ${Cause.pretty(exit.cause)}` }
                : undefined,
          ),
        ),
      { concurrency: "unbounded" },
    ),
    (found) => found.filter((v): v is Violation => v !== undefined),
  )

/** Any value as text, the way a leak check reads it: statuses, errors (with their message), entries. */
export const text = (value: unknown): string =>
  value instanceof Error ? `${value.name} ${value.message} ${show(value)}` : show(value)

export interface Capture {
  /** Every log line (message, annotations and cause) and every span (name, attributes, events), as text. */
  readonly texts: () => ReadonlyArray<string>
  /** Log entries at Error level or above, and defects seen in logged causes. */
  readonly errors: () => ReadonlyArray<string>
  readonly layer: Layer.Layer<never>
}

const show = (value: unknown): string => {
  try {
    return typeof value === "string"
      ? value
      : JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? String(v) : v))
  } catch {
    return String(value)
  }
}

/** Captures logs and spans as text, to look for leaked secrets and unexpected errors. */
export const capture = (): Capture => {
  const texts: Array<string> = []
  const errors: Array<string> = []
  const logger = Logger.make((options) => {
    const text = `${options.logLevel} ${show(options.message)} ${Cause.pretty(options.cause)}`
    texts.push(text)
    if (options.logLevel === "Error" || options.logLevel === "Fatal" || Cause.hasDies(options.cause))
      errors.push(text)
  })
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      const end = span.end.bind(span)
      span.end = (endTime, exit) => {
        texts.push(`span ${options.name} ${show([...span.attributes])} ${show(span.events)} ${show(exit)}`)
        end(endTime, exit)
      }
      return span
    },
  })
  return {
    texts: () => texts,
    errors: () => errors,
    layer: Layer.merge(Logger.layer([logger]), Layer.succeed(Tracer.Tracer)(tracer)),
  }
}

/** Fails the effect with every violation listed, so the test output shows them all. */
export const assertNone = (violations: ReadonlyArray<Violation>): Effect.Effect<void, string> =>
  violations.length === 0
    ? Effect.void
    : Effect.fail(violations.map((v) => `[${v.invariant}] ${v.detail}`).join("\n"))

export interface SocketCount {
  /** Sockets the client holds open right now. */
  readonly open: () => number
  /** The most it ever held at once. */
  readonly max: () => number
  /** When each connection attempt began (milliseconds, by the client's clock), refused ones included. */
  readonly attempts: () => ReadonlyArray<number>
  /** The transport to give the client: `inner`, counted. */
  readonly layer: Layer.Layer<Transport.GatewayTransport>
}

/**
 * Counts the sockets a client holds, on the client's side of the wire (a server or proxy
 * sees a closed socket go a little later, so only the client can tell "one at a time").
 */
export const countSockets = (inner: Transport.GatewayTransport["Service"]): SocketCount => {
  let open = 0
  let max = 0
  const attempts: Array<number> = []
  return {
    open: () => open,
    max: () => max,
    attempts: () => attempts,
    layer: Layer.succeed(Transport.GatewayTransport)({
      connect: (url) =>
        Effect.acquireRelease(
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => {
              attempts.push(now)
              max = Math.max(max, ++open)
            }),
          ),
          () => Effect.sync(() => void open--),
        ).pipe(Effect.andThen(inner.connect(url))),
    }),
  }
}

export interface PerGuildReport {
  readonly violations: Array<Violation>
  /** Produced events never consumed. */
  readonly lost: number
  /** Consumed events seen before (the second and later copies). */
  readonly duplicated: number
  /** Consumed events whose number is below one already consumed for the guild. */
  readonly outOfOrder: number
  /** Consumed guild events in all. */
  readonly consumed: number
}

/**
 * Per guild, exactly once and in order: every `Traffic.guildMessage` the gateway produced
 * (`GuildTraffic`'s log) was consumed once, and each guild's numbers rise. Other events are ignored.
 */
export const perGuild = (
  produced: ReadonlyMap<string, ReadonlyArray<number>>,
  consumed: ReadonlyArray<Protocol.Dispatch>,
): PerGuildReport => {
  const seen = new Map<string, Set<number>>()
  const last = new Map<string, number>()
  let duplicated = 0
  let outOfOrder = 0
  let total = 0
  const violations: Array<Violation> = []
  for (const dispatch of consumed) {
    const event = Traffic.guildMessageOf(Protocol.eventName(dispatch), dispatch.data)
    if (event === undefined) continue
    total++
    const set = seen.get(event.guildId) ?? new Set<number>()
    seen.set(event.guildId, set)
    if (set.has(event.n)) {
      duplicated++
      if (duplicated <= 5) {
        violations.push({ invariant: "per-guild", detail: `guild ${event.guildId}: #${event.n} twice` })
      }
      continue
    }
    set.add(event.n)
    const before = last.get(event.guildId)
    if (before !== undefined && event.n < before) {
      outOfOrder++
      if (outOfOrder <= 5) {
        violations.push({
          invariant: "per-guild",
          detail: `guild ${event.guildId}: #${event.n} after #${before}`,
        })
      }
    }
    last.set(event.guildId, Math.max(before ?? event.n, event.n))
  }
  let lost = 0
  for (const [guildId, numbers] of produced) {
    const set = seen.get(guildId)
    const missing = numbers.filter((n) => !set?.has(n))
    lost += missing.length
    if (missing.length > 0 && violations.length < 10) {
      violations.push({
        invariant: "per-guild",
        detail: `guild ${guildId}: ${missing.length} lost (first #${missing[0]})`,
      })
    }
  }
  return { violations, lost, duplicated, outOfOrder, consumed: total }
}
