/**
 * What the demo (or any run) proves: every event the server produced, per session, against
 * what the consumer received. A session's events must arrive as 1, 2, 3, … with no gap and
 * no repeat; the newest session of each shard must be complete.
 */
import type { Protocol } from "@vigil/gateway"
import type { Health } from "@vigil/provider"
import type { style } from "./Screen.ts"

type Style = ReturnType<typeof style>

export interface SessionProduced {
  readonly id: string
  readonly shard: readonly [number, number]
  /** The last sequence the server produced on this session. */
  readonly seq: number
}

export interface Summary {
  readonly produced: number
  readonly delivered: number
  readonly lost: number
  readonly duplicated: number
  readonly outOfOrder: number
  readonly reconnects: number
  readonly resumes: number
  readonly identifies: number
  readonly latencyP50: number | undefined
  readonly latencyP99: number | undefined
  readonly heartbeatMillis: ReadonlyArray<number>
  /** The reshard under load, if the run had one: per guild, across both sessions. */
  readonly reshard?: ReshardSummary | undefined
  readonly ok: boolean
}

export interface ReshardSummary {
  readonly from: number
  readonly to: number
  readonly completed: boolean
  /** From the start to the old set closed. */
  readonly tookMillis: number | undefined
  /** Guild events sent (to one session or both). */
  readonly sent: number
  /** Of them, sent to both the old and the new session. */
  readonly sentTwice: number
  readonly lost: number
  readonly duplicated: number
  readonly outOfOrder: number
}

/** The storm's summary with the reshard's: ok only if both are. */
export const withReshard = (summary: Summary, reshard: ReshardSummary | undefined): Summary =>
  reshard === undefined
    ? summary
    : {
        ...summary,
        reshard,
        ok:
          summary.ok &&
          reshard.completed &&
          reshard.lost === 0 &&
          reshard.duplicated === 0 &&
          reshard.outOfOrder === 0,
      }

export const percentile = (sorted: ReadonlyArray<number>, p: number): number | undefined =>
  sorted.length === 0
    ? undefined
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]

export const make = () => {
  /** Per session: the sequences received, in order. */
  const sessions = new Map<string, Array<number>>()
  const currentSession = new Map<number, string>()
  const latencies: Array<number> = []

  const received = (shardId: number, dispatch: Protocol.Dispatch, now: number): void => {
    if (dispatch.type === "READY") currentSession.set(shardId, dispatch.data.session_id)
    const session = currentSession.get(shardId)
    if (session === undefined) return
    let list = sessions.get(session)
    if (!list) {
      list = []
      sessions.set(session, list)
    }
    list.push(dispatch.seq)
    const sentAt = (dispatch.data as { sent_at?: unknown } | null)?.sent_at
    if (typeof sentAt === "number") latencies.push(now - sentAt)
  }

  /** Every session's newest event has arrived. */
  const caughtUp = (produced: ReadonlyArray<SessionProduced>): boolean =>
    produced.every((p) => {
      const got = sessions.get(p.id)
      return got === undefined ? !isNewest(p, produced) : got.at(-1) === p.seq
    })

  const isNewest = (p: SessionProduced, all: ReadonlyArray<SessionProduced>) =>
    all.filter((q) => q.shard[0] === p.shard[0]).at(-1) === p

  const summary = (
    produced: ReadonlyArray<SessionProduced>,
    health: ReadonlyArray<Health.ShardReport>,
  ): Summary => {
    let delivered = 0
    let lost = 0
    let duplicated = 0
    let outOfOrder = 0
    let total = 0
    for (const p of produced) {
      const got = sessions.get(p.id) ?? []
      delivered += got.length
      const unique = new Set(got)
      duplicated += got.length - unique.size
      for (let i = 1; i < got.length; i++) if (got[i]! <= got[i - 1]!) outOfOrder++
      // A session that was replaced may legitimately stop short (Discord cannot replay a
      // session it ended); what it delivered must still be 1..n. The newest must be whole.
      const expected = isNewest(p, produced) ? p.seq : Math.max(0, ...got)
      total += expected
      for (let seq = 1; seq <= expected; seq++) if (!unique.has(seq)) lost++
    }
    const sorted = latencies.slice().sort((a, b) => a - b)
    return {
      produced: total,
      delivered,
      lost,
      duplicated,
      outOfOrder,
      reconnects: health.reduce((n, h) => n + h.reconnects, 0),
      resumes: health.reduce((n, h) => n + h.resumes, 0),
      identifies: health.reduce((n, h) => n + h.identifies, 0),
      latencyP50: percentile(sorted, 50),
      latencyP99: percentile(sorted, 99),
      heartbeatMillis: health.flatMap((h) => (h.latencyMillis === undefined ? [] : [h.latencyMillis])),
      ok: lost === 0 && duplicated === 0 && outOfOrder === 0 && total > 0,
    }
  }

  return { received, caughtUp, summary }
}

export const format = (r: Summary, s: Style): string => {
  const ms = (n: number | undefined) => (n === undefined ? "-" : `${n} ms`)
  const rows: Array<[string, string]> = [
    ["events sent", String(r.produced)],
    ["events delivered", String(r.delivered)],
    ["lost", r.lost === 0 ? s.green("0") : s.red(String(r.lost))],
    ["duplicated", r.duplicated === 0 ? s.green("0") : s.red(String(r.duplicated))],
    ["out of order", r.outOfOrder === 0 ? s.green("0") : s.red(String(r.outOfOrder))],
    ["reconnects", String(r.reconnects)],
    ["resumes", String(r.resumes)],
    ["identifies", String(r.identifies)],
    ["delivery latency p50 / p99", `${ms(r.latencyP50)} / ${ms(r.latencyP99)}`],
    ["heartbeat round trip", r.heartbeatMillis.map((n) => `${n} ms`).join(", ") || "-"],
  ]
  const zero = (n: number) => (n === 0 ? s.green("0") : s.red(String(n)))
  if (r.reshard !== undefined) {
    const x = r.reshard
    rows.push(
      [
        `reshard ${x.from} → ${x.to}`,
        x.completed ? `done, old set closed after ${ms(x.tookMillis)}` : s.red("failed (rolled back)"),
      ],
      ["  guild events (to both)", `${x.sent} (${x.sentTwice})`],
      [
        "  lost / duplicated / out of order",
        `${zero(x.lost)} / ${zero(x.duplicated)} / ${zero(x.outOfOrder)}`,
      ],
    )
  }
  const width = Math.max(...rows.map(([k]) => k.length))
  const verdict = r.ok
    ? s.green(s.bold("every invariant held: nothing lost, nothing twice, in order"))
    : s.red(s.bold("INVARIANT VIOLATED"))
  return `${s.bold("report")}\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join("\n")}\n\n${verdict}`
}
