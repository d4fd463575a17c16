/**
 * The per-guild handover of a reshard, as a synchronous filter over the manager's merged
 * events (it runs in the consumer, in queue order, so its decisions follow exactly the order
 * the shards delivered in). While shards of two counts run, a guild's events arrive on its
 * old shard (`% N`) and, once the new shard (`% M`) has sent its GUILD_CREATE, there too:
 * each must reach the consumer once and in the guild's order.
 *
 * Per guild (the key; events without a guild share the key `""`):
 * - `old`: only the old shard's copies are delivered.
 * - `joined`: the new shard sent the guild's GUILD_CREATE (dropped: the consumer has the guild
 *   already). The new copies wait in `pending` until the overlap: the first event seen on both.
 *   Before it, the old stream is behind or level, so delivering new copies could jump ahead.
 * - `new`: after the overlap both streams carry the same sequence; each event is delivered on
 *   its first arrival, from either side, and its second copy dropped.
 * When the old shard is retired (closed, and every event it queued processed), the old stream
 * is complete, and what happens to a guild follows from what the two streams showed, never
 * from how long anything took:
 * - pending copies (no overlap: the old stream never reached the new one's first event) are
 *   delivered in order, and the guild's state dropped;
 * - otherwise the new stream may still lag behind the old one (the scheduler read the old
 *   socket first, the machine is loaded): the guild *drains*. Its new copies are still matched
 *   against the old ones (a copy the old shard delivered is dropped) until the new stream
 *   passes the old one's end: it delivers the copy of the old shard's last event, or an event
 *   the old shard never had (both streams carry one order, so everything after is new too).
 *   Then the state is dropped. A guild whose old tail the new stream already matched drops
 *   it at once. The handover leaves the consumer's filter once closed and every guild drained.
 *
 * "The same event" on two sessions (sequence numbers differ per session): MESSAGE_CREATE,
 * MESSAGE_DELETE and INTERACTION_CREATE by id; MESSAGE_UPDATE by id, `edited_timestamp` and a
 * hash of the payload (an embed unfurl keeps the timestamp); any other type by its name and
 * a 53-bit hash of the payload's JSON (both copies are the server's serialisation of one
 * event). Copies are matched by occurrence (the k-th copy of a fingerprint on one side is the
 * k-th on the other), so two genuinely identical events are both kept. Each guild remembers
 * its last `window` fingerprints, and those of its pending copies (at most `pendingLimit`):
 * the bounded memory; a side lagging more than `window` of one guild's events behind the
 * other after the overlap is past what it can match (documented limit).
 */
import type * as Protocol from "../Protocol.ts"

export interface Tagged {
  readonly shardId: number
  readonly shardCount: number
  readonly dispatch: Protocol.Dispatch
}

export interface HandoverOptions {
  /** Fingerprints remembered per guild. Default 256. */
  readonly window?: number | undefined
  /** New copies held per guild before the overlap; past it they are delivered. Default 1024. */
  readonly pendingLimit?: number | undefined
  readonly now: () => number
}

type Phase = "old" | "joined" | "new"

interface Seen {
  old: number
  new: number
}

interface GuildState {
  phase: Phase
  /** The retiring shard (of the old count) the guild is on. */
  readonly oldShard: number
  /** Its shard of the new count. */
  readonly newShard: number
  joinedAt: number | undefined
  lastOldAt: number | undefined
  /** The fingerprint of the old shard's last copy: the new stream has caught up once it matched it. */
  lastOld: string | undefined
  /** The old shard retired: only the new stream's lagging copies are left to match. */
  retired: boolean
  /** The fingerprint of the new shard's last copy: for a rollback, the mirror of `lastOld`. */
  lastNew: string | undefined
  /** The new shard was closed (a rollback) after delivering copies the old stream has still to send. */
  abandoned: boolean
  pending: Array<Tagged>
  readonly seen: Map<string, Seen>
  readonly order: Array<string>
}

export interface WaveProgress {
  /** Guilds the joining shards announced (READY) that are not handed over yet. */
  readonly waiting: number
  /** Guilds whose new shard has not sent its GUILD_CREATE. */
  readonly notJoined: number
  /** Joined guilds whose new copies still wait for the overlap. */
  readonly pending: number
}

export interface HandoverStats {
  /** Second copies dropped. */
  readonly duplicates: number
  /** GUILD_CREATE / READY of joining shards not passed on. */
  readonly absorbed: number
  /** Guilds handed over by an overlap. */
  readonly overlaps: number
  /** Pending copies delivered without an overlap (old shard retired, or the pending limit). */
  readonly flushed: number
  /** Guilds whose new stream still lagged behind the old one when the old shard retired. */
  readonly drained: number
  /** Second copies that came after their old (or, in a rollback, new) shard closed: dropped by a drain. */
  readonly late: number
}

export const make = (from: number, to: number, options: HandoverOptions) => {
  const window = options.window ?? 256
  const pendingLimit = options.pendingLimit ?? 1024
  const retiring = new Set<number>()
  const joining = new Set<number>()
  /** Per joining shard: the guilds its READY listed. */
  const announced = new Map<number, ReadonlySet<string>>()
  /** Per joining shard: when its READY came. */
  const readyAt = new Map<number, number>()
  const guilds = new Map<string, GuildState>()
  let duplicates = 0
  let absorbed = 0
  let overlaps = 0
  let flushed = 0
  let drained = 0
  let late = 0
  /**
   * Per new shard, its guilds whose old shard retired before the new stream passed the old
   * one's end; per old shard, its guilds whose new shard closed (a rollback) before the old
   * stream passed the new one's end. Per shard, so that another handover's filter (a
   * rollback's reverse one) still gets every other shard's events.
   */
  const draining = new Map<number, number>()
  const abandoning = new Map<number, number>()
  /** No more waves: once nothing drains, the filter is finished. */
  let closed = false

  const stateOf = (key: string): GuildState => {
    let state = guilds.get(key)
    if (state === undefined) {
      state = {
        phase: "old",
        oldShard: key === "" ? 0 : shardOf(key, from),
        newShard: key === "" ? 0 : shardOf(key, to),
        joinedAt: undefined,
        lastOldAt: undefined,
        lastOld: undefined,
        retired: false,
        lastNew: undefined,
        abandoned: false,
        pending: [],
        seen: new Map(),
        order: [],
      }
      guilds.set(key, state)
    }
    return state
  }

  /** Counts a copy on `side`; true when it is the first arrival of this occurrence. */
  const count = (state: GuildState, fp: string, side: "old" | "new"): boolean => {
    let seen = state.seen.get(fp)
    if (seen === undefined) {
      seen = { old: 0, new: 0 }
      state.seen.set(fp, seen)
      state.order.push(fp)
      if (state.order.length > window) {
        const oldest = state.order.shift()!
        const held = state.seen.get(oldest)!
        // A pending copy's fingerprint stays until the overlap (pending copies are bounded by
        // `pendingLimit`): forgotten, its old copy would not be recognised as the overlap, and
        // the pending ones would go out after the old stream delivered them.
        if (state.phase === "joined" && held.new > held.old) state.order.push(oldest)
        else state.seen.delete(oldest)
      }
    }
    seen[side]++
    return side === "old" ? seen.old > seen.new : seen.new > seen.old
  }

  const fromOld = (key: string, state: GuildState, event: Tagged, out: Array<Tagged>) => {
    if (state.abandoned) {
      abandonedCopy(key, state, event, out)
      return
    }
    state.lastOldAt = options.now()
    const fp = fingerprint(event.dispatch)
    state.lastOld = fp
    const first = count(state, fp, "old")
    if (state.phase === "joined" && !first) {
      // The overlap: a pending new copy is this event. Deliver the pending ones in order
      // (this event among them); from now on both sides merge.
      overlaps++
      state.phase = "new"
      out.push(...state.pending)
      state.pending = []
      return
    }
    if (first) out.push(event)
    else duplicates++
  }

  const fromNew = (key: string, event: Tagged, out: Array<Tagged>) => {
    const type = event.dispatch.type as string
    if (type === "READY" && joining.has(event.shardId)) {
      absorbed++
      const listed = (event.dispatch.data as { guilds?: ReadonlyArray<{ id: string }> } | null)?.guilds ?? []
      announced.set(event.shardId, new Set(listed.map((g) => g.id)))
      readyAt.set(event.shardId, options.now())
      return
    }
    // A guild whose old shard is not in handover (it died: a 4011) has no other copy.
    if (!retiring.has(key === "" ? 0 : shardOf(key, from)) && !guilds.has(key)) {
      out.push(event)
      return
    }
    const state = stateOf(key)
    if (state.retired) {
      drain(key, state, event, out)
      return
    }
    if (type === "GUILD_CREATE" && state.phase === "old" && announced.get(event.shardId)?.has(key)) {
      // The new shard's snapshot of a guild the consumer already has from the old shard.
      absorbed++
      state.phase = "joined"
      state.joinedAt = options.now()
      return
    }
    if (state.phase === "old") {
      state.phase = "joined"
      state.joinedAt = options.now()
    }
    const fp = fingerprint(event.dispatch)
    state.lastNew = fp
    const first = count(state, fp, "new")
    if (state.phase === "new") {
      if (first) out.push(event)
      else duplicates++
      return
    }
    // joined: before the overlap
    if (!first) {
      overlaps++
      duplicates++
      state.phase = "new"
      out.push(...state.pending)
      state.pending = []
      return
    }
    state.pending.push(event)
    if (state.pending.length > pendingLimit) flush(state, out)
  }

  /** The old stream is complete: is the new one past its end (the old tail matched, or nothing to match)? */
  const caughtUp = (state: GuildState): boolean => {
    const tail = state.lastOld === undefined ? undefined : state.seen.get(state.lastOld)
    // A tail out of the window: the new stream added `window` fingerprints since, it is ahead.
    return tail === undefined || tail.new >= tail.old
  }

  /** The new stream is complete (its shard closed in a rollback): is the old one past its end? */
  const oldCaughtUp = (state: GuildState): boolean => {
    const tail = state.lastNew === undefined ? undefined : state.seen.get(state.lastNew)
    return tail === undefined || tail.old >= tail.new
  }

  const forget = (key: string, state: GuildState) => {
    if (state.retired) bump(draining, state.newShard, -1)
    if (state.abandoned) bump(abandoning, state.oldShard, -1)
    guilds.delete(key)
  }

  /** An old copy of a guild whose new shard was closed in a rollback: `drain`'s mirror. */
  const abandonedCopy = (key: string, state: GuildState, event: Tagged, out: Array<Tagged>) => {
    if (count(state, fingerprint(event.dispatch), "old")) {
      out.push(event)
      forget(key, state)
      return
    }
    duplicates++
    late++
    if (oldCaughtUp(state)) forget(key, state)
  }

  /** A new copy of a guild whose old shard retired (see the module doc). */
  const drain = (key: string, state: GuildState, event: Tagged, out: Array<Tagged>) => {
    if (event.dispatch.type === "GUILD_CREATE" && state.phase === "old") {
      // The new shard's GUILD_CREATE came after the old shard retired (the guild was taken as
      // unavailable): passed on as without a handover; its events still match the old ones.
      state.phase = "new"
      out.push(event)
      return
    }
    state.phase = "new"
    if (count(state, fingerprint(event.dispatch), "new")) {
      // The old shard never had it: the new stream is past the old one's end.
      out.push(event)
      forget(key, state)
      return
    }
    duplicates++
    late++
    if (caughtUp(state)) forget(key, state)
  }

  const flush = (state: GuildState, out: Array<Tagged>) => {
    flushed += state.pending.length
    out.push(...state.pending)
    state.pending = []
    state.phase = "new"
  }

  return {
    /** Starts handing the guilds of `retire` (old count) over to `join` (new count). */
    begin: (retire: ReadonlyArray<number>, join: ReadonlyArray<number>) => {
      for (const id of retire) retiring.add(id)
      for (const id of join) joining.add(id)
    },
    /**
     * The old shards `retire` are closed and every event they queued was processed: their
     * guilds' pending copies go out and their state is dropped; the events of `join` (which
     * held only their guilds) pass straight through from now on. Returns what to deliver.
     */
    retire: (retire: ReadonlyArray<number>, join: ReadonlyArray<number>): Array<Tagged> => {
      const out: Array<Tagged> = []
      for (const id of retire) retiring.delete(id)
      for (const id of join) {
        joining.delete(id)
        announced.delete(id)
        readyAt.delete(id)
      }
      for (const [key, state] of guilds) {
        if (retiring.has(state.oldShard) || state.retired) continue
        if (state.pending.length > 0 || caughtUp(state)) {
          flush(state, out)
          guilds.delete(key)
          continue
        }
        // The new stream lags behind the old one: its copies of what was delivered are still to come.
        state.retired = true
        bump(draining, state.newShard, 1)
        drained++
      }
      return out
    },
    /** No more waves (the reshard committed): the filter finishes once no guild drains. */
    close: (): void => {
      closed = true
    },
    /**
     * No more waves, and the shards of both counts that still run serve on as they are (a
     * rollback ended): only the guilds still draining either way are kept, until they drained.
     */
    release: (): void => {
      closed = true
      retiring.clear()
      joining.clear()
      announced.clear()
      readyAt.clear()
      for (const [key, state] of guilds) if (!state.retired && !state.abandoned) guilds.delete(key)
    },
    /**
     * Ends every drain at once (a rollback hands the new shards' guilds back: the reverse
     * handover matches their events from now on).
     */
    stopDraining: (): void => {
      for (const [key, state] of guilds) if (state.retired) forget(key, state)
    },
    /** Closed, and nothing left to match: the consumer's filter can drop it. */
    finished: (): boolean => closed && retiring.size === 0 && draining.size === 0 && abandoning.size === 0,
    /**
     * The joining shards `join` were closed before taking over (a rollback) and every event
     * they queued was processed: their pending copies are dropped (the old shards, still
     * running, carry those events). A guild whose new shard delivered copies the old stream
     * has not sent yet stays until the old stream passes the new one's end (`drain`'s mirror:
     * it matches the new shard's last copy, or sends one the new shard never had).
     */
    abort: (retire: ReadonlyArray<number>, join: ReadonlyArray<number>): void => {
      for (const id of join) {
        joining.delete(id)
        announced.delete(id)
      }
      const of = new Set(retire)
      for (const state of guilds.values()) {
        if (!of.has(state.oldShard)) continue
        // Never delivered: their old copies must not count as second ones.
        for (const event of state.pending) {
          const seen = state.seen.get(fingerprint(event.dispatch))
          if (seen !== undefined) seen.new--
        }
        state.pending = []
        // Only after an overlap (or a flush) did the new shard deliver anything.
        const delivered = state.phase === "new"
        if (state.phase === "joined") state.phase = "new"
        if (delivered && !state.abandoned && !oldCaughtUp(state)) {
          state.abandoned = true
          bump(abandoning, state.oldShard, 1)
        }
      }
    },
    /** Whether the manager must route this event through `process`. */
    involves: (event: Tagged): boolean =>
      event.shardCount === to
        ? joining.has(event.shardId) || draining.has(event.shardId)
        : retiring.has(event.shardId) || abandoning.has(event.shardId),
    /** The events to deliver for this one (none, it, or it with pending ones). */
    process: (event: Tagged, out: Array<Tagged>): void => {
      const key = guildOf(event.dispatch)
      if (event.shardCount === to) {
        fromNew(key, event, out)
        return
      }
      const state = guilds.get(key)
      // A guild no joining shard has touched yet still needs its fingerprints remembered:
      // its new shard's first copies may come after the old ones.
      if (state === undefined && !retiring.has(event.shardId)) {
        out.push(event)
        return
      }
      fromOld(key, state ?? stateOf(key), event, out)
    },
    /**
     * How far the joining shards are: a guild is handed over once it overlapped, or joined
     * with nothing pending and `quietMillis` passed since it joined and since its old shard
     * last sent it anything (the old stream has likely caught up past the new shard's
     * GUILD_CREATE). This only says when the old shard may close: which copy is delivered is
     * decided by the streams alone (a lagging new stream drains after the retire).
     * A guild with no GUILD_CREATE `unavailableMillis` after its shard's READY is unavailable
     * (a Discord outage): not waited for; its GUILD_CREATE, when it comes, reaches the consumer.
     */
    progress: (
      shards: ReadonlyArray<number>,
      quietMillis: number,
      unavailableMillis: number,
    ): WaveProgress => {
      const now = options.now()
      let waiting = 0
      let notJoined = 0
      let pending = 0
      for (const id of shards) {
        const unavailable = now - (readyAt.get(id) ?? now) >= unavailableMillis
        for (const key of announced.get(id) ?? []) {
          if (!retiring.has(shardOf(key, from))) continue
          const state = guilds.get(key)
          if (state === undefined || state.phase === "old") {
            notJoined++
            if (!unavailable) waiting++
          } else if (state.phase === "joined") {
            const quiet =
              state.pending.length === 0 &&
              now - (state.joinedAt ?? now) >= quietMillis &&
              now - (state.lastOldAt ?? Number.NEGATIVE_INFINITY) >= quietMillis
            if (!quiet) waiting++
            if (state.pending.length > 0) pending++
          }
        }
      }
      return { waiting, notJoined, pending }
    },
    /** Whether every joining shard in `shards` sent READY. */
    announced: (shards: ReadonlyArray<number>): boolean => shards.every((id) => announced.has(id)),
    stats: (): HandoverStats => ({ duplicates, absorbed, overlaps, flushed, drained, late }),
    /** Guild states held (bounded: the guilds of the shards in handover). */
    size: () => guilds.size,
  }
}

export type Handover = ReturnType<typeof make>

/** Counts per shard; a shard with none is not in the map. */
const bump = (counts: Map<number, number>, shard: number, by: number) => {
  const n = (counts.get(shard) ?? 0) + by
  if (n > 0) counts.set(shard, n)
  else counts.delete(shard)
}

const shardOf = (guildId: string, count: number): number => {
  try {
    return Number((BigInt(guildId) >> 22n) % BigInt(count))
  } catch {
    return 0
  }
}

/** The guild an event belongs to (`""`: none). GUILD_CREATE/UPDATE/DELETE carry it as `id`. */
export const guildOf = (dispatch: Protocol.Dispatch): string => {
  const data = dispatch.data as { guild_id?: unknown; id?: unknown } | null
  if (data === null || typeof data !== "object") return ""
  if (typeof data.guild_id === "string") return data.guild_id
  const type = dispatch.type as string
  if (
    (type === "GUILD_CREATE" || type === "GUILD_UPDATE" || type === "GUILD_DELETE") &&
    typeof data.id === "string"
  )
    return data.id
  return ""
}

/** What identifies one event across two sessions (see the module doc). */
export const fingerprint = (dispatch: Protocol.Dispatch): string => {
  const type = dispatch.type as string
  const data = dispatch.data as { id?: unknown; edited_timestamp?: unknown } | null
  const id = data !== null && typeof data === "object" && typeof data.id === "string" ? data.id : undefined
  if (id !== undefined) {
    if (type === "MESSAGE_CREATE" || type === "MESSAGE_DELETE" || type === "INTERACTION_CREATE")
      return `${type}:${id}`
    if (type === "MESSAGE_UPDATE")
      return `${type}:${id}:${String(data!.edited_timestamp)}:${hash(dispatch.data)}`
  }
  return `${type}:${hash(dispatch.data)}`
}

/** cyrb53 over the JSON: 53 bits, enough that two events of one guild within a window never collide in practice. */
const hash = (value: unknown): string => {
  const text = JSON.stringify(value) ?? ""
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 2654435761)
    h2 = Math.imul(h2 ^ c, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36)
}
