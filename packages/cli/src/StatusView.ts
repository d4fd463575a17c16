/** One line per shard, for the live view and for `vigil connect`. */
import type { Shard } from "@vigil/gateway"
import type { Health } from "@vigil/provider"
import type { style } from "./Screen.ts"

type Style = ReturnType<typeof style>

const stateText = (state: Shard.ShardState, now: number, live: boolean): string => {
  switch (state._tag) {
    case "Ready":
      return "ready"
    case "BackingOff":
      return live
        ? `backing off ${Math.max(0, Math.ceil((state.until - now) / 100) / 10)} s (${state.reason})`
        : `backing off (${state.reason})`
    case "Stopped":
      return `stopped: ${state.reason}`
    case "WaitingForIdentify":
      return "waiting for identify"
    default:
      return state._tag.toLowerCase()
  }
}

/**
 * `live` adds what changes all the time (latency, counters); without it the line only
 * changes when the shard's state does, which is what a piped log wants.
 */
export const line = (health: Health.ShardReport, now: number, s: Style, live: boolean): string => {
  const id = health.shardId
  const count = health.shardCount
  const state = stateText(health.state, now, live)
  const colour = health.state._tag === "Ready" ? s.green : health.state._tag === "Stopped" ? s.red : s.yellow
  const head = `shard ${id}/${count}  ${colour(state.padEnd(live ? 12 : 0))}`
  if (!live) return `${head}  session ${health.sessionId ?? "-"}`
  const latency =
    health.latencyMillis === undefined ? "   -  " : `${String(health.latencyMillis).padStart(4)} ms`
  const last = health.lastError
  // The close reason and the URL tried: what an operator needs to tell the server's fault from ours.
  const error = last ? s.dim(`  last: ${last.message}${last.url ? ` (${last.url})` : ""}`) : ""
  return (
    `${head}  ${latency}  ${String(health.delivered).padStart(7)} events  ` +
    `${health.connections} conn · ${health.resumes} resumed · ${health.identifies} identified${error}`
  )
}
