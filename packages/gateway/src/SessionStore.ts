/**
 * Where a shard keeps what it needs to resume: session id, last sequence, resume URL and
 * shard count. The default lives in memory; implement the interface over a file or a
 * database and a restarted process resumes instead of identifying (identifies are capped
 * at 1000 a day, resumes are free).
 */
import { Context, Effect, Layer, Option } from "effect"

export interface StoredSession {
  readonly sessionId: string
  readonly sequence: number | null
  readonly resumeUrl: string
  readonly shardCount: number
}

export interface SessionStoreService {
  readonly load: (shardId: number) => Effect.Effect<Option.Option<StoredSession>>
  readonly save: (shardId: number, session: StoredSession) => Effect.Effect<void>
  readonly clear: (shardId: number) => Effect.Effect<void>
}

export class SessionStore extends Context.Service<SessionStore, SessionStoreService>()(
  "@vigil/gateway/SessionStore",
) {
  /** A store in this process's memory: survives reconnects, not restarts. */
  static readonly layerMemory: Layer.Layer<SessionStore> = Layer.sync(SessionStore)(() => makeMemory())
}

export const makeMemory = (): SessionStoreService => {
  const sessions = new Map<number, StoredSession>()
  return {
    load: (shardId) => Effect.sync(() => Option.fromNullishOr(sessions.get(shardId))),
    save: (shardId, session) => Effect.sync(() => void sessions.set(shardId, session)),
    clear: (shardId) => Effect.sync(() => void sessions.delete(shardId)),
  }
}
