/**
 * Hands each read of a generation's dispatches on: to `events`, and, for message events
 * while `inbound` or `messages` has a consumer, decoded to `inbound` (or reported malformed),
 * counted for health; one publish per hub per read, not per event. READY also tells who the
 * bot is.
 */
import { Protocol, type ShardManager } from "@vigil/gateway"
import { Effect, PubSub, Result } from "effect"
import * as Inbound from "../Inbound.ts"
import { type Shared, signal } from "./Shared.ts"

export const pump =
  (shared: Shared) =>
  (events: ReadonlyArray<ShardManager.ShardEvent>): Effect.Effect<void> =>
    Effect.suspend(() => {
      // A whole read at once: the events as they are, then the messages decoded from them.
      // READY says who the bot is before the messages after it are decoded.
      const inbound: Array<Inbound.Inbound> = []
      let ready = false
      const decode = shared.inboundListeners > 0
      for (const { shardId, dispatch } of events) {
        if (dispatch.type === "READY") {
          shared.botUser = Inbound.readyUser(dispatch.data) ?? shared.botUser
          ready = true
        }
        if (!decode || !Inbound.messageTypes.has(Protocol.eventName(dispatch))) continue
        const decoded = Inbound.decode(shardId, dispatch, {
          botUserId: shared.botUser?.id,
          includeOwn: shared.config.includeOwnMessages,
        })
        switch (decoded._tag) {
          case "Event":
            shared.inbound.messages++
            inbound.push(Result.succeed(decoded.event))
            break
          case "Malformed":
            shared.inbound.malformed++
            inbound.push(Result.fail(decoded.error))
            break
          case "Skip":
            if (decoded.own) shared.inbound.ownSkipped++
        }
      }
      let published: Effect.Effect<unknown> = PubSub.publishAll(shared.eventsHub, events)
      if (inbound.length > 0) {
        published = Effect.andThen(published, PubSub.publishAll(shared.inboundHub, inbound))
      }
      if (ready) published = Effect.andThen(published, signal(shared))
      return Effect.asVoid(published)
    })
