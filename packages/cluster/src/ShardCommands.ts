/**
 * Commands from any runner: presence, voice state and member requests for shard N, sent from
 * whichever runner the app runs on, reach the runner where shard N lives.
 *
 * They travel as messages to an `effect/cluster` Entity whose id is the shard's singleton name
 * (`ShardSingleton.nameOf`): the cluster maps an entity id and a singleton of the same name to
 * the same cluster shard, so the entity always lives on the runner the singleton is placed on.
 * There the handler finds the running shard (`ShardSingleton.layer` registers the entity and
 * its shards) and sends through it, fenced like any local send. Messages are volatile (never
 * stored): a command is delivered now or fails with a typed error, never replayed later.
 */
import type { SessionStore, Shard } from "@vigil/gateway"
import { PayloadTooLarge, ShardStopped } from "@vigil/gateway/GatewayError"
import { GuildMembersRateLimited, GuildMembersTimeout, InvalidMembersRequest } from "@vigil/gateway/Members"
import { Duration, Effect, type Layer, Schema } from "effect"
import { Entity, type Sharding } from "effect/cluster"
import { Rpc } from "effect/rpc"
import { ShardNotRunning, ShardUnreachable } from "./ClusterError.ts"
import { keyOf, nameOf } from "./internal/names.ts"

type GatewayPresenceUpdateData = Parameters<Shard.Shard["updatePresence"]>[0]
type GatewayVoiceStateUpdateData = Parameters<Shard.Shard["updateVoiceState"]>[0]

/** The shards running on this runner, by singleton name (filled by `ShardSingleton`). */
export type LocalShards = Map<string, Shard.Shard>

const Sent = Schema.Union([ShardNotRunning, ShardStopped, PayloadTooLarge])

const Presence = Schema.Struct({
  since: Schema.NullOr(Schema.Number),
  activities: Schema.Array(Schema.Record(Schema.String, Schema.Unknown)),
  status: Schema.Literals(["online", "dnd", "idle", "invisible", "offline"]),
  afk: Schema.Boolean,
})

const VoiceState = Schema.Struct({
  guild_id: Schema.String,
  channel_id: Schema.NullOr(Schema.String),
  self_mute: Schema.Boolean,
  self_deaf: Schema.Boolean,
})

const MembersRequest = Schema.Struct({
  guildId: Schema.String,
  query: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.Number),
  userIds: Schema.optional(Schema.Array(Schema.String)),
  presences: Schema.optional(Schema.Boolean),
  timeoutMillis: Schema.optional(Schema.Number),
})

const MembersResult = Schema.Struct({
  guildId: Schema.String,
  nonce: Schema.String,
  members: Schema.Array(Schema.Unknown),
  presences: Schema.Array(Schema.Unknown),
  notFound: Schema.Array(Schema.String),
})

export const UpdatePresence = Rpc.make("UpdatePresence", { payload: { presence: Presence }, error: Sent })
export const UpdateVoiceState = Rpc.make("UpdateVoiceState", { payload: { state: VoiceState }, error: Sent })
export const RequestGuildMembers = Rpc.make("RequestGuildMembers", {
  payload: { request: MembersRequest },
  success: MembersResult,
  error: Schema.Union([
    ShardNotRunning,
    ShardStopped,
    PayloadTooLarge,
    GuildMembersRateLimited,
    GuildMembersTimeout,
    InvalidMembersRequest,
  ]),
})

/** The entity: one per Discord shard, id `ShardSingleton.nameOf(shard)`. */
export const ShardEntity = Entity.make("VigilShard", [UpdatePresence, UpdateVoiceState, RequestGuildMembers])

/** Registers the entity on this runner; its handlers send through `shards`. */
export const layer = (shards: LocalShards): Layer.Layer<never, never, Sharding.Sharding> =>
  ShardEntity.toLayer(
    Effect.sync(() => {
      const running = (name: string) => {
        const shard = shards.get(name)
        return shard === undefined
          ? Effect.fail(new ShardNotRunning({ shard: keyOf(name) }))
          : Effect.succeed(shard)
      }
      return ShardEntity.of({
        UpdatePresence: ({ address, payload }) =>
          Effect.flatMap(running(address.entityId), (shard) =>
            shard.updatePresence(payload.presence as GatewayPresenceUpdateData),
          ),
        UpdateVoiceState: ({ address, payload }) =>
          Effect.flatMap(running(address.entityId), (shard) =>
            shard.updateVoiceState(payload.state as GatewayVoiceStateUpdateData),
          ),
        // A member request waits for its chunks: it must not hold up the shard's other commands.
        RequestGuildMembers: ({ address, payload: { request } }) =>
          Effect.flatMap(running(address.entityId), (shard) =>
            shard.requestGuildMembers({
              guildId: request.guildId,
              query: request.query,
              limit: request.limit,
              userIds: request.userIds,
              presences: request.presences,
              timeout:
                request.timeoutMillis === undefined ? undefined : Duration.millis(request.timeoutMillis),
            }),
          ).pipe(Rpc.fork),
      })
    }),
  )

type Refused = ShardNotRunning | ShardStopped | PayloadTooLarge | ShardUnreachable

/** Shard N's commands, wherever it runs in the cluster. */
export interface ShardCommandsClient {
  readonly updatePresence: (presence: Schema.Schema.Type<typeof Presence>) => Effect.Effect<void, Refused>
  readonly updateVoiceState: (state: GatewayVoiceStateUpdateData) => Effect.Effect<void, Refused>
  readonly requestGuildMembers: (
    request: Schema.Schema.Type<typeof MembersRequest>,
  ) => Effect.Effect<
    Schema.Schema.Type<typeof MembersResult>,
    Refused | GuildMembersRateLimited | GuildMembersTimeout | InvalidMembersRequest
  >
}

const ownTags: ReadonlySet<string> = new Set([
  "ShardNotRunning",
  "ShardStopped",
  "PayloadTooLarge",
  "GuildMembersRateLimited",
  "GuildMembersTimeout",
  "InvalidMembersRequest",
])
type Own = Refused | GuildMembersRateLimited | GuildMembersTimeout | InvalidMembersRequest

/** The cluster's own failures (no runner holds the shard, mailbox full, ...) become `ShardUnreachable`. */
const delivered =
  (shard: SessionStore.ShardKey) =>
  <A, E extends { readonly _tag: string }>(
    effect: Effect.Effect<A, E>,
  ): Effect.Effect<A, Extract<E, Own> | ShardUnreachable> =>
    Effect.mapError(effect, (error) =>
      ownTags.has(error._tag)
        ? (error as Extract<E, Own>)
        : new ShardUnreachable({ shard, reason: "message" in error ? String(error.message) : error._tag }),
    )

/** A client for any shard of the cluster, from any runner. */
export const client: Effect.Effect<
  (shard: SessionStore.ShardKey) => ShardCommandsClient,
  never,
  Sharding.Sharding
> = Effect.map(ShardEntity.client, (clientFor) => (shard) => {
  const entity = clientFor(nameOf(shard))
  const via = delivered(shard)
  return {
    updatePresence: (presence) => via(entity.UpdatePresence({ presence })),
    updateVoiceState: (state) => via(entity.UpdateVoiceState({ state })),
    requestGuildMembers: (request) => via(entity.RequestGuildMembers({ request })),
  }
})
