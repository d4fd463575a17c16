/**
 * What names one event across runners and crashes: `(shardId, sessionId, seq)`. A shard that
 * moves RESUMEs its session, so after a crash the next owner may hand over again what the
 * crashed one's app had already handled (at most the event in its hands and the save window,
 * `sessionSave`): an app whose work must happen once keeps, with that work, the last key it
 * handled per shard, and drops what is not past it. Sequences only grow within a session, and
 * a new session begins with its READY.
 */
import type { Protocol } from "@vigil/gateway"
import { Stream } from "effect"

export interface KeyedEvent {
  readonly shardId: number
  /** The session the event belongs to (a READY starts a new one). */
  readonly sessionId: string
  readonly seq: number
  readonly dispatch: Protocol.Dispatch
}

const readySession = (data: unknown): string | undefined => {
  const id = (data as { session_id?: unknown } | null)?.session_id
  return typeof id === "string" ? id : undefined
}

/**
 * A shard's events, each with its key. `session` is the session the shard starts with (the
 * one it resumes; none when it identifies, and then its first event is READY).
 */
export const keyed = (
  events: Stream.Stream<Protocol.Dispatch>,
  shardId: number,
  session: string | undefined,
): Stream.Stream<KeyedEvent> =>
  Stream.suspend(() => {
    let sessionId = session ?? ""
    return Stream.map(events, (dispatch): KeyedEvent => {
      if (dispatch.type === "READY") sessionId = readySession(dispatch.data) ?? sessionId
      return { shardId, sessionId, seq: dispatch.seq, dispatch }
    })
  })

/** Whether `event` comes after `last`, the last one handled for its shard (none: yes). */
export const isNew = (event: KeyedEvent, last: Pick<KeyedEvent, "sessionId" | "seq"> | undefined): boolean =>
  last === undefined || event.sessionId !== last.sessionId || event.seq > last.seq
