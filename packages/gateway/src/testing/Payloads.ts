/** Server payloads as Discord sends them, for scripting a gateway in tests. */

export interface DispatchPayload {
  readonly op: 0
  readonly s: number
  readonly t: string
  readonly d: unknown
}

export const hello = (intervalMillis: number) => ({
  op: 10,
  d: { heartbeat_interval: intervalMillis },
  s: null,
  t: null,
})

export const ack = { op: 11, d: null, s: null, t: null } as const

export const invalidSession = (resumable: boolean) => ({ op: 9, d: resumable, s: null, t: null })

export const reconnect = { op: 7, d: null, s: null, t: null } as const

export const heartbeatRequest = { op: 1, d: null, s: null, t: null } as const

export const dispatch = (seq: number, type: string, data: unknown): DispatchPayload => ({
  op: 0,
  d: data,
  s: seq,
  t: type,
})

export const readyData = (
  sessionId: string,
  shard: readonly [number, number],
  resumeUrl = "memory://resume",
) => ({
  v: 10,
  session_id: sessionId,
  resume_gateway_url: resumeUrl,
  user: { id: "1", username: "vigil" },
  guilds: [],
  shard,
  application: { id: "1" },
})

export const ready = (seq: number, sessionId = "session-1", shard: readonly [number, number] = [0, 1]) =>
  dispatch(seq, "READY", readyData(sessionId, shard))
