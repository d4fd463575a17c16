import type { ShardManager } from "@vigil/gateway"
import { Effect, Stream } from "effect"

// Logs who said what: `dispatch.data` is typed by the event's name, no casts.
export const logMessages = (events: Stream.Stream<ShardManager.ShardEvent>) =>
  Stream.runForEach(events, ({ shardId, dispatch }) => {
    switch (dispatch.type) {
      case "READY":
        return Effect.log(`shard ${shardId}: ready as ${dispatch.data.user.username}`)
      case "MESSAGE_CREATE":
        return Effect.log(`${dispatch.data.author.username}: ${dispatch.data.content}`)
      default:
        return Effect.void // any other event, known to discord-api-types or not
    }
  })
