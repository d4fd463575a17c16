/**
 * What the fake gateway saw and did: every frame in and out, every connection opened and
 * closed, every protocol decision and every injected fault, stamped with the `Clock` time,
 * a global order `index` and the connection id. The query functions here read a snapshot
 * (`FakeGateway.entries`), so a test asserts on plain data.
 */

/** Who ended a connection: the client's close frame, the server's, or neither (1006). */
export type ClosedBy = "client" | "server" | "network"

interface Base {
  /** Position in the recording: a total order, unlike `at` (millisecond ties are common). */
  readonly index: number
  /** `Clock` time in epoch milliseconds (so `TestClock` time in tests that use it). */
  readonly at: number
}

export interface Opened extends Base {
  readonly _tag: "Opened"
  readonly connection: number
  /** The request path and query the client connected with, e.g. `/?v=10&encoding=json`. */
  readonly path: string
}

export interface Received extends Base {
  readonly _tag: "Received"
  readonly connection: number
  /** The opcode, when the frame parsed as a gateway payload. */
  readonly op: number | undefined
  readonly bytes: number
  /** The parsed payload with any `token` replaced by `"<redacted>"`; undefined if it did not parse. */
  readonly payload: unknown
  /** Received while the connection was half-open: read and discarded unanswered. */
  readonly ignored: boolean
}

export interface Sent extends Base {
  readonly _tag: "Sent"
  readonly connection: number
  readonly op: number
  readonly t: string | null
  readonly s: number | null
  /** Bytes on the wire (after compression) and the WebSocket frames they took. */
  readonly bytes: number
  readonly frames: number
}

/** A payload the server would have sent but held back (the connection is half-open). */
export interface Withheld extends Base {
  readonly _tag: "Withheld"
  readonly connection: number
  readonly op: number
  readonly t: string | null
  readonly s: number | null
}

export interface Closed extends Base {
  readonly _tag: "Closed"
  readonly connection: number
  /** The close code of the frame that ended the connection (1006 when none came). */
  readonly code: number
  readonly reason: string
  readonly by: ClosedBy
}

export interface Identified extends Base {
  readonly _tag: "Identified"
  readonly connection: number
  readonly session: string
  readonly shard: readonly [number, number]
  readonly intents: number
}

export interface Resumed extends Base {
  readonly _tag: "Resumed"
  readonly connection: number
  readonly session: string
  readonly shard: readonly [number, number]
  /** The `seq` the client resumed from, and how many dispatches were replayed after it. */
  readonly from: number | null
  readonly replayed: number
}

/**
 * The server refused something: it closed with `code`, or answered Invalid Session
 * (`invalidSession` is then its `d`). `shard` is set when the refused command named one.
 */
export interface Rejected extends Base {
  readonly _tag: "Rejected"
  readonly connection: number
  readonly reason: string
  readonly code: number | undefined
  readonly invalidSession: boolean | undefined
  readonly shard: readonly [number, number] | undefined
}

/** A fault a test injected, or one the server applied on its own (a heartbeat timeout). */
export interface Fault extends Base {
  readonly _tag: "Fault"
  readonly connection: number | undefined
  readonly fault: string
  readonly detail: string
}

export interface Http extends Base {
  readonly _tag: "Http"
  readonly method: string
  readonly path: string
  readonly status: number
}

export type Entry =
  | Opened
  | Received
  | Sent
  | Withheld
  | Closed
  | Identified
  | Resumed
  | Rejected
  | Fault
  | Http

// ---------------------------------------------------------------------------
// Queries

type Of<T extends Entry["_tag"]> = Extract<Entry, { readonly _tag: T }>

export const only = <T extends Entry["_tag"]>(entries: ReadonlyArray<Entry>, tag: T): ReadonlyArray<Of<T>> =>
  entries.filter((entry): entry is Of<T> => entry._tag === tag)

/** Frames received, optionally only those with opcode `op`. */
export const received = (entries: ReadonlyArray<Entry>, op?: number): ReadonlyArray<Received> =>
  only(entries, "Received").filter((entry) => op === undefined || entry.op === op)

/** Frames sent, optionally only those with opcode `op`. */
export const sent = (entries: ReadonlyArray<Entry>, op?: number): ReadonlyArray<Sent> =>
  only(entries, "Sent").filter((entry) => op === undefined || entry.op === op)

const countBy = <A>(items: ReadonlyArray<A>, key: (a: A) => number): ReadonlyMap<number, number> => {
  const counts = new Map<number, number>()
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1)
  return counts
}

/** Heartbeats (op 1) received, per connection id. */
export const heartbeatsPerConnection = (entries: ReadonlyArray<Entry>): ReadonlyMap<number, number> =>
  countBy(received(entries, 1), (entry) => entry.connection)

/** Identifies the server accepted (each started a session and used a session start). */
export const identifyCount = (entries: ReadonlyArray<Entry>): number => only(entries, "Identified").length

/** Identify payloads received, accepted or not. */
export const identifyAttempts = (entries: ReadonlyArray<Entry>): number => received(entries, 2).length

export const resumeCount = (entries: ReadonlyArray<Entry>): number => only(entries, "Resumed").length

/** Connections the client closed, with the code of its close frame, in order. */
export const clientCloses = (
  entries: ReadonlyArray<Entry>,
): ReadonlyArray<{ readonly connection: number; readonly code: number }> =>
  only(entries, "Closed")
    .filter((entry) => entry.by === "client")
    .map((entry) => ({ connection: entry.connection, code: entry.code }))

export const faults = (entries: ReadonlyArray<Entry>, name?: string): ReadonlyArray<Fault> =>
  only(entries, "Fault").filter((entry) => name === undefined || entry.fault === name)

/** The shard each connection identified or resumed as (or tried to identify as), first one wins. */
export const shardOfConnection = (entries: ReadonlyArray<Entry>): ReadonlyMap<number, number> => {
  const shards = new Map<number, number>()
  for (const entry of entries) {
    if (entry._tag !== "Identified" && entry._tag !== "Resumed" && entry._tag !== "Rejected") continue
    if (entry.shard !== undefined && !shards.has(entry.connection))
      shards.set(entry.connection, entry.shard[0])
  }
  return shards
}

/**
 * The most sockets open at the same time for each shard, over the whole recording. A
 * connection counts for its shard from the moment it opened until it closed, so a client
 * that opens a new socket before the old one is gone shows up here as 2.
 */
export const maxOpenPerShard = (entries: ReadonlyArray<Entry>): ReadonlyMap<number, number> => {
  const shardOf = shardOfConnection(entries)
  const open = new Map<number, number>()
  const max = new Map<number, number>()
  for (const entry of entries) {
    if (entry._tag !== "Opened" && entry._tag !== "Closed") continue
    const shard = shardOf.get(entry.connection)
    if (shard === undefined) continue
    const now = (open.get(shard) ?? 0) + (entry._tag === "Opened" ? 1 : -1)
    open.set(shard, now)
    max.set(shard, Math.max(max.get(shard) ?? 0, now))
  }
  return max
}

/** The most sockets open at the same time, whatever their shard. */
export const maxOpen = (entries: ReadonlyArray<Entry>): number => {
  let open = 0
  let max = 0
  for (const entry of entries) {
    if (entry._tag === "Opened") max = Math.max(max, ++open)
    else if (entry._tag === "Closed") open--
  }
  return max
}

/** Dispatches (op 0) sent on a connection, as `[seq, type]`, in order. */
export const dispatchesSent = (
  entries: ReadonlyArray<Entry>,
  connection?: number,
): ReadonlyArray<readonly [number, string]> =>
  sent(entries, 0)
    .filter((entry) => connection === undefined || entry.connection === connection)
    .map((entry) => [entry.s ?? -1, entry.t ?? ""] as const)

/** A multi-line, human-readable rendering, for failure messages. */
export const format = (entries: ReadonlyArray<Entry>): string =>
  entries
    .map((entry) => {
      const { _tag, index, at, ...rest } = entry
      return `#${index} +${at} ${_tag} ${JSON.stringify(rest)}`
    })
    .join("\n")
