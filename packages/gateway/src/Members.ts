/**
 * Request Guild Members (op 8): replies arrive as GUILD_MEMBERS_CHUNK dispatches carrying
 * the request's nonce, possibly many; an over-limit request gets a RATE_LIMITED dispatch
 * instead. The registry correlates them by nonce and hands back one result.
 */
import type { APIGuildMember, GatewayGuildMembersChunkPresence } from "discord-api-types/v10"
import { Clock, Deferred, Duration, Effect, Schema } from "effect"
import type { PayloadTooLarge, ShardStopped } from "./GatewayError.ts"
import * as Protocol from "./Protocol.ts"

export interface RequestGuildMembers {
  readonly guildId: string
  /** Username prefix ("" for all, needs the GUILD_MEMBERS intent); with `limit`. */
  readonly query?: string | undefined
  readonly limit?: number | undefined
  /** Up to 100 user ids (instead of `query`). */
  readonly userIds?: ReadonlyArray<string> | undefined
  readonly presences?: boolean | undefined
  /** How long to wait for all chunks. Default 30 s. */
  readonly timeout?: Duration.Input | undefined
}

export interface GuildMembersResult {
  readonly guildId: string
  readonly nonce: string
  readonly members: ReadonlyArray<APIGuildMember>
  readonly presences: ReadonlyArray<GatewayGuildMembersChunkPresence>
  readonly notFound: ReadonlyArray<string>
}

export class GuildMembersRateLimited extends Schema.TaggedError<GuildMembersRateLimited>()(
  "GuildMembersRateLimited",
  { guildId: Schema.String, retryAfterSeconds: Schema.Number },
) {
  override get message() {
    return `request guild members rate limited for guild ${this.guildId}; retry after ${this.retryAfterSeconds} s`
  }
}

export class GuildMembersTimeout extends Schema.TaggedError<GuildMembersTimeout>()("GuildMembersTimeout", {
  guildId: Schema.String,
  received: Schema.Number,
}) {
  override get message() {
    return `guild ${this.guildId}: not all member chunks arrived in time (${this.received} received)`
  }
}

export class InvalidMembersRequest extends Schema.TaggedError<InvalidMembersRequest>()(
  "InvalidMembersRequest",
  {
    reason: Schema.String,
  },
) {}

export type GuildMembersError = GuildMembersRateLimited | GuildMembersTimeout | InvalidMembersRequest

interface Pending {
  readonly guildId: string
  readonly members: Array<APIGuildMember>
  readonly presences: Array<GatewayGuildMembersChunkPresence>
  readonly notFound: Array<string>
  received: number
  readonly done: Deferred.Deferred<void, GuildMembersRateLimited | ShardStopped>
}

export const makeRegistry = () => {
  const pending = new Map<string, Pending>()
  let counter = 0

  /**
   * Looks at every delivered dispatch; only two event types concern it. Their data is
   * typed, not validated (the hot path), so each field is checked before it is used.
   */
  const observe = (dispatch: Protocol.Dispatch): void => {
    if (dispatch.type === "GUILD_MEMBERS_CHUNK") {
      const d = dispatch.data
      const entry = pending.get(String(d?.nonce))
      if (!entry) return
      if (Array.isArray(d.members)) entry.members.push(...d.members)
      if (Array.isArray(d.presences)) entry.presences.push(...d.presences)
      if (Array.isArray(d.not_found)) entry.notFound.push(...d.not_found.map(String))
      entry.received++
      if (typeof d.chunk_count !== "number" || entry.received >= d.chunk_count) {
        Deferred.doneUnsafe(entry.done, Effect.void)
      }
    } else if (dispatch.type === "RATE_LIMITED") {
      const d = dispatch.data
      const entry = pending.get(String(d?.meta?.nonce))
      if (!entry) return
      const retryAfter = Number(d.retry_after ?? 0)
      Deferred.doneUnsafe(
        entry.done,
        Effect.fail(new GuildMembersRateLimited({ guildId: entry.guildId, retryAfterSeconds: retryAfter })),
      )
    }
  }

  /** The shard stopped for good: requests still waiting for chunks fail with `error`. */
  const close = (error: ShardStopped) =>
    Effect.sync(() => {
      for (const entry of pending.values()) Deferred.doneUnsafe(entry.done, Effect.fail(error))
    })

  const request = (
    req: RequestGuildMembers,
    send: (op: number, d: unknown) => Effect.Effect<void, PayloadTooLarge | ShardStopped>,
  ): Effect.Effect<GuildMembersResult, GuildMembersError | PayloadTooLarge | ShardStopped> =>
    Effect.gen(function* () {
      if (req.userIds === undefined && req.query === undefined) {
        return yield* new InvalidMembersRequest({ reason: "either query or userIds is required" })
      }
      if (req.userIds !== undefined && req.userIds.length > 100) {
        return yield* new InvalidMembersRequest({ reason: "at most 100 user ids per request" })
      }
      const now = yield* Clock.currentTimeMillis
      const nonce = `vigil-${now.toString(36)}-${(counter++).toString(36)}`.slice(0, 32)
      const entry: Pending = {
        guildId: req.guildId,
        members: [],
        presences: [],
        notFound: [],
        received: 0,
        done: Deferred.makeUnsafe(),
      }
      pending.set(nonce, entry)
      const timeout = req.timeout ?? Duration.seconds(30)
      yield* send(Protocol.Op.RequestGuildMembers, {
        guild_id: req.guildId,
        ...(req.userIds !== undefined
          ? { user_ids: req.userIds }
          : { query: req.query, limit: req.limit ?? 0 }),
        ...(req.presences ? { presences: true } : {}),
        nonce,
      }).pipe(
        Effect.andThen(Deferred.await(entry.done)),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(new GuildMembersTimeout({ guildId: req.guildId, received: entry.received })),
        }),
        Effect.ensuring(Effect.sync(() => pending.delete(nonce))),
      )
      return {
        guildId: req.guildId,
        nonce,
        members: entry.members,
        presences: entry.presences,
        notFound: entry.notFound,
      }
    })

  return { observe, request, close }
}
