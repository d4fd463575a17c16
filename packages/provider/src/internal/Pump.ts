/**
 * Hands each dispatch of a generation on: to `events`, and, for message events, decoded to
 * `inbound` (or reported malformed), counted for health. READY also tells who the bot is.
 */
import { Protocol, type ShardManager } from "@vigil/gateway"
import { Effect, PubSub, Result } from "effect"
import * as Inbound from "../Inbound.ts"
import { type Shared, signal } from "./Shared.ts"

export const pump =
  (shared: Shared) =>
  (event: ShardManager.ShardEvent): Effect.Effect<void> =>
    Effect.suspend(() => {
      const { shardId, dispatch } = event
      let published = PubSub.publish(shared.eventsHub, event).pipe(Effect.asVoid)
      if (dispatch.type === "READY") {
        shared.botUser = Inbound.readyUser(dispatch.data) ?? shared.botUser
        published = Effect.andThen(published, signal(shared))
      }
      if (!Inbound.messageTypes.has(Protocol.eventName(dispatch))) return published
      const decoded = Inbound.decode(shardId, dispatch, {
        botUserId: shared.botUser?.id,
        includeOwn: shared.config.includeOwnMessages,
      })
      switch (decoded._tag) {
        case "Event":
          shared.inbound.messages++
          return Effect.andThen(published, PubSub.publish(shared.inboundHub, Result.succeed(decoded.event)))
        case "Malformed":
          shared.inbound.malformed++
          return Effect.andThen(published, PubSub.publish(shared.inboundHub, Result.fail(decoded.error)))
        case "Skip":
          if (decoded.own) shared.inbound.ownSkipped++
          return published
      }
    })
