/**
 * Where a shard keeps what it needs to resume: session id, last sequence, resume URL. Keyed
 * by shard id *and* shard count: Discord lets sessions of different shard counts run at once
 * (a rescale prepared beside the running set), and shard 3 of 16 must not take over shard 3
 * of 8's session. The default lives in memory; `KeyValueSessionStore` persists it so a
 * restarted process resumes instead of identifying (identifies are capped at 1000 a day,
 * resumes are free).
 */
import { Context, type Duration, Effect, Layer, Option } from "effect"

/** `[shard id, shard count]`, as in Identify. */
export type ShardKey = readonly [id: number, count: number]

export interface StoredSession {
  readonly sessionId: string
  readonly sequence: number | null
  readonly resumeUrl: string
}

/** How often a shard writes its moving sequence to the store (`ShardConfig.sessionSave`). */
export interface SaveOptions {
  /** Longest time a moved sequence waits for its write. Default 1 s. */
  readonly interval?: Duration.Input | undefined
  /** Most unsaved events before a write. Default 1000. */
  readonly events?: number | undefined
}

/** A store never fails: what it cannot read or write is a miss, logged by the store. */
export interface SessionStoreService {
  readonly load: (shard: ShardKey) => Effect.Effect<Option.Option<StoredSession>>
  readonly save: (shard: ShardKey, session: StoredSession) => Effect.Effect<void>
  readonly clear: (shard: ShardKey) => Effect.Effect<void>
}

export class SessionStore extends Context.Service<SessionStore, SessionStoreService>()(
  "@vigil/gateway/SessionStore",
) {
  /** A store in this process's memory: survives reconnects, not restarts. */
  static readonly layerMemory: Layer.Layer<SessionStore> = Layer.sync(SessionStore)(() => makeMemory())
}

export const makeMemory = (): SessionStoreService => {
  const sessions = new Map<string, StoredSession>()
  const key = ([id, count]: ShardKey) => `${id}/${count}`
  return {
    load: (shard) => Effect.sync(() => Option.fromNullishOr(sessions.get(key(shard)))),
    save: (shard, session) => Effect.sync(() => void sessions.set(key(shard), session)),
    clear: (shard) => Effect.sync(() => void sessions.delete(key(shard))),
  }
}
