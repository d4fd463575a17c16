/**
 * Inbound messages: MESSAGE_CREATE, MESSAGE_UPDATE and MESSAGE_DELETE dispatches decoded
 * with `Schema` into one tagged union, `MessageEvent`, in the app's terms (camelCase,
 * the shard and sequence it came with, whether it mentions the bot).
 *
 * `decode` is pure: it takes a dispatch and the bot's user id (from READY) and says what
 * to do with it — hand on a `MessageEvent`, report a `MalformedEvent`, or skip it (not a
 * message event, or the bot's own message).
 */

import * as Protocol from "@vigil/gateway/Protocol"
import { Result, Schema } from "effect"
import { MalformedEvent } from "./ProviderError.ts"

// ---------------------------------------------------------------------------
// What the app gets

export const Author = Schema.Struct({
  id: Schema.String,
  username: Schema.String,
  /** `global_name`, else the username. */
  displayName: Schema.String,
  bot: Schema.Boolean,
})
export type Author = typeof Author.Type

const origin = { shardId: Schema.Int, seq: Schema.Int }

/** A new message. */
export const MessageCreated = Schema.TaggedStruct("MessageCreated", {
  ...origin,
  id: Schema.String,
  channelId: Schema.String,
  /** Absent in DMs. */
  guildId: Schema.optional(Schema.String),
  author: Author,
  content: Schema.String,
  /** ISO 8601. */
  timestamp: Schema.String,
  /** The message this one replies to. */
  replyTo: Schema.optional(Schema.String),
  /** The bot is among the users mentioned. */
  mentionsBot: Schema.Boolean,
})
export type MessageCreated = typeof MessageCreated.Type

/**
 * An edited message. Discord may send partial updates (an embed resolved later): then
 * `author` and `content` are absent.
 */
export const MessageUpdated = Schema.TaggedStruct("MessageUpdated", {
  ...origin,
  id: Schema.String,
  channelId: Schema.String,
  guildId: Schema.optional(Schema.String),
  author: Schema.optional(Author),
  content: Schema.optional(Schema.String),
  editedTimestamp: Schema.optional(Schema.String),
  mentionsBot: Schema.Boolean,
})
export type MessageUpdated = typeof MessageUpdated.Type

/** A deleted message (Discord says only which). */
export const MessageDeleted = Schema.TaggedStruct("MessageDeleted", {
  ...origin,
  id: Schema.String,
  channelId: Schema.String,
  guildId: Schema.optional(Schema.String),
})
export type MessageDeleted = typeof MessageDeleted.Type

export const MessageEvent = Schema.Union([MessageCreated, MessageUpdated, MessageDeleted])
export type MessageEvent = typeof MessageEvent.Type

/** An inbound item: a decoded message event, or the typed report of one that did not decode. */
export type Inbound = Result.Result<MessageEvent, MalformedEvent>

// ---------------------------------------------------------------------------
// What Discord sends (the fields Vigil reads; others are ignored)

const Snowflake = Schema.String.check(Schema.isPattern(/^\d{1,20}$/))

const WireUser = Schema.Struct({
  id: Snowflake,
  username: Schema.String,
  global_name: Schema.optional(Schema.NullOr(Schema.String)),
  bot: Schema.optional(Schema.Boolean),
})

const WireMessage = Schema.Struct({
  id: Snowflake,
  channel_id: Snowflake,
  guild_id: Schema.optional(Snowflake),
  author: WireUser,
  content: Schema.String,
  timestamp: Schema.String,
  mentions: Schema.optional(Schema.Array(Schema.Struct({ id: Schema.String }))),
  message_reference: Schema.optional(Schema.Struct({ message_id: Schema.optional(Schema.String) })),
})

const WireUpdate = Schema.Struct({
  id: Snowflake,
  channel_id: Snowflake,
  guild_id: Schema.optional(Snowflake),
  author: Schema.optional(WireUser),
  content: Schema.optional(Schema.String),
  edited_timestamp: Schema.optional(Schema.NullOr(Schema.String)),
  mentions: Schema.optional(Schema.Array(Schema.Struct({ id: Schema.String }))),
})

const WireDelete = Schema.Struct({
  id: Snowflake,
  channel_id: Snowflake,
  guild_id: Schema.optional(Snowflake),
})

const decodeMessage = Schema.decodeUnknownResult(WireMessage)
const decodeUpdate = Schema.decodeUnknownResult(WireUpdate)
const decodeDelete = Schema.decodeUnknownResult(WireDelete)

const author = (user: typeof WireUser.Type): Author => ({
  id: user.id,
  username: user.username,
  displayName: user.global_name ?? user.username,
  bot: user.bot ?? false,
})

const mentions = (list: ReadonlyArray<{ readonly id: string }> | undefined, botId: string | undefined) =>
  botId !== undefined && (list ?? []).some((user) => user.id === botId)

/** The dispatch types `decode` reads. */
export const messageTypes: ReadonlySet<string> = new Set([
  "MESSAGE_CREATE",
  "MESSAGE_UPDATE",
  "MESSAGE_DELETE",
])

export type Decoded =
  | { readonly _tag: "Event"; readonly event: MessageEvent }
  | { readonly _tag: "Malformed"; readonly error: MalformedEvent }
  /** Not a message event, or the bot's own message (when those are filtered). */
  | { readonly _tag: "Skip"; readonly own: boolean }

const skip: Decoded = { _tag: "Skip", own: false }
const own: Decoded = { _tag: "Skip", own: true }

export interface DecodeOptions {
  /** The bot's user id, from READY; its own messages are skipped. */
  readonly botUserId: string | undefined
  /** Hand on the bot's own messages too. Default false. */
  readonly includeOwn?: boolean | undefined
}

export const decode = (shardId: number, dispatch: Protocol.Dispatch, options: DecodeOptions): Decoded => {
  const { botUserId } = options
  const base = { shardId, seq: dispatch.seq }
  const malformed = (error: Schema.SchemaError): Decoded => ({
    _tag: "Malformed",
    error: new MalformedEvent({
      shardId,
      type: Protocol.eventName(dispatch),
      seq: dispatch.seq,
      detail: error.message,
    }),
  })
  const isOwn = (authorId: string | undefined) =>
    options.includeOwn !== true && botUserId !== undefined && authorId === botUserId
  switch (dispatch.type) {
    case "MESSAGE_CREATE": {
      const result = decodeMessage(dispatch.data)
      if (Result.isFailure(result)) return malformed(result.failure)
      const m = result.success
      if (isOwn(m.author.id)) return own
      return {
        _tag: "Event",
        event: {
          _tag: "MessageCreated",
          ...base,
          id: m.id,
          channelId: m.channel_id,
          ...(m.guild_id !== undefined ? { guildId: m.guild_id } : {}),
          author: author(m.author),
          content: m.content,
          timestamp: m.timestamp,
          ...(m.message_reference?.message_id !== undefined
            ? { replyTo: m.message_reference.message_id }
            : {}),
          mentionsBot: mentions(m.mentions, botUserId),
        },
      }
    }
    case "MESSAGE_UPDATE": {
      const result = decodeUpdate(dispatch.data)
      if (Result.isFailure(result)) return malformed(result.failure)
      const m = result.success
      if (isOwn(m.author?.id)) return own
      return {
        _tag: "Event",
        event: {
          _tag: "MessageUpdated",
          ...base,
          id: m.id,
          channelId: m.channel_id,
          ...(m.guild_id !== undefined ? { guildId: m.guild_id } : {}),
          ...(m.author !== undefined ? { author: author(m.author) } : {}),
          ...(m.content !== undefined ? { content: m.content } : {}),
          ...(m.edited_timestamp != null ? { editedTimestamp: m.edited_timestamp } : {}),
          mentionsBot: mentions(m.mentions, botUserId),
        },
      }
    }
    case "MESSAGE_DELETE": {
      const result = decodeDelete(dispatch.data)
      if (Result.isFailure(result)) return malformed(result.failure)
      const m = result.success
      return {
        _tag: "Event",
        event: {
          _tag: "MessageDeleted",
          ...base,
          id: m.id,
          channelId: m.channel_id,
          ...(m.guild_id !== undefined ? { guildId: m.guild_id } : {}),
        },
      }
    }
    default:
      return skip
  }
}

/** Who the bot is, as READY's `user` and `GET /users/@me` tell it (the fields Vigil uses). */
export const BotUser = Schema.Struct({ id: Schema.String, username: Schema.String })
export type BotUser = typeof BotUser.Type

const ReadyUser = Schema.Struct({ user: BotUser })
const decodeReadyUser = Schema.decodeUnknownOption(ReadyUser)

/** The bot's user from a READY dispatch's data. */
export const readyUser = (data: unknown): BotUser | undefined => {
  const ready = decodeReadyUser(data)
  return ready._tag === "Some" ? ready.value.user : undefined
}
