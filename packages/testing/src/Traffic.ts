/**
 * Realistic dispatch payloads and the arithmetic of sharding, for scripting traffic:
 * snowflakes, guild ids spread over shards (`shard = (guild_id >> 22) % count`), large
 * GUILD_CREATE payloads and MESSAGE_CREATE events.
 */

/** Discord's epoch (2015-01-01), the zero of a snowflake's timestamp. */
export const discordEpoch = 1_420_070_400_000n

/** A snowflake for `timestampMillis`; `increment` tells apart ids made in the same millisecond. */
export const snowflake = (timestampMillis: number, increment = 0): string =>
  (((BigInt(Math.floor(timestampMillis)) - discordEpoch) << 22n) | BigInt(increment & 0xfff)).toString()

/** The shard a guild's events go to. DMs (no guild) go to shard 0. */
export const shardOf = (guildId: string | undefined, shardCount: number): number =>
  guildId === undefined ? 0 : Number((BigInt(guildId) >> 22n) % BigInt(shardCount))

const base = BigInt(1_700_000_000_000) - discordEpoch

/**
 * `count` guild ids spread round-robin over `shards`: id `i` lands on shard `i % shards`.
 * Deterministic, so a test can name "the third guild of shard 1".
 */
export const guildIds = (count: number, shards = 1): ReadonlyArray<string> => {
  const start = base - (base % BigInt(shards)) // a multiple of `shards`, so the first id is on shard 0
  return Array.from({ length: count }, (_, i) => ((start + BigInt(i)) << 22n).toString())
}

/** The `n`th guild id (from 0) that lands on `shard` of `shards`. */
export const guildIdOnShard = (shard: number, shards: number, n = 0): string => {
  const start = base - (base % BigInt(shards))
  return ((start + BigInt(n * shards + shard)) << 22n).toString()
}

/** Member `i` (from 0) of a guild: the same id and name wherever it appears (GUILD_CREATE, member chunks). */
export const member = (guildId: string, i: number) => ({
  user: {
    id: (BigInt(guildId) + BigInt(4_000_000 + i + 1)).toString(),
    username: `member${i}`,
    discriminator: "0",
    global_name: null,
    avatar: null,
  },
  roles: [],
  joined_at: "2024-01-01T00:00:00.000000+00:00",
  deaf: false,
  mute: false,
  flags: 0,
})

export interface GuildCreateOptions {
  readonly members?: number | undefined
  readonly channels?: number | undefined
  readonly roles?: number | undefined
}

/**
 * A GUILD_CREATE payload. With a few thousand members it is hundreds of kilobytes, which is
 * what exercises frame reassembly and decompression buffers.
 */
export const guildCreate = (guildId: string, options: GuildCreateOptions = {}) => {
  const members = options.members ?? 0
  const channels = options.channels ?? 1
  const roles = options.roles ?? 1
  const idOf = (kind: number, i: number) => (BigInt(guildId) + BigInt(kind * 1_000_000 + i + 1)).toString()
  return {
    id: guildId,
    name: `guild ${guildId}`,
    icon: null,
    owner_id: idOf(1, 0),
    unavailable: false,
    large: members > 250,
    member_count: members,
    joined_at: "2024-01-01T00:00:00.000000+00:00",
    roles: Array.from({ length: roles }, (_, i) => ({
      id: i === 0 ? guildId : idOf(2, i),
      name: i === 0 ? "@everyone" : `role ${i}`,
      permissions: "0",
      position: i,
      color: 0,
      hoist: false,
      managed: false,
      mentionable: false,
    })),
    channels: Array.from({ length: channels }, (_, i) => ({
      id: idOf(3, i),
      type: 0,
      name: `channel-${i}`,
      position: i,
      guild_id: guildId,
    })),
    members: Array.from({ length: members }, (_, i) => member(guildId, i)),
    presences: [],
    voice_states: [],
    threads: [],
    emojis: [],
    stickers: [],
  }
}

/** A MESSAGE_CREATE payload; `n` makes its id and content unique. */
export const messageCreate = (n: number, options: { guildId?: string; channelId?: string } = {}) => ({
  id: snowflake(1_700_000_000_000 + n, n),
  channel_id: options.channelId ?? "1100000000000000000",
  ...(options.guildId !== undefined ? { guild_id: options.guildId } : {}),
  author: {
    id: "1200000000000000000",
    username: "someone",
    discriminator: "0",
    global_name: null,
    avatar: null,
  },
  content: `message ${n}`,
  timestamp: "2024-01-01T00:00:00.000000+00:00",
  edited_timestamp: null,
  tts: false,
  mention_everyone: false,
  mentions: [],
  mention_roles: [],
  attachments: [],
  embeds: [],
  pinned: false,
  type: 0,
})

/**
 * Event `n` (from 0) of a guild's own stream: a MESSAGE_CREATE whose `nonce` is `n`, so a
 * consumer can check each guild's events arrive exactly once and in order (`Invariants.perGuild`).
 * Its id is unique across guilds and numbers.
 */
export const guildMessage = (guildId: string, n: number) => ({
  ...messageCreate(n, { guildId }),
  id: (BigInt(guildId) + 50_000_000n + BigInt(n)).toString(),
  nonce: String(n),
})

/** The guild and per-guild number of a `guildMessage`, or undefined for any other event. */
export const guildMessageOf = (
  type: string | null,
  data: unknown,
): { readonly guildId: string; readonly n: number } | undefined => {
  if (type !== "MESSAGE_CREATE" || data === null || typeof data !== "object") return undefined
  const { guild_id, nonce } = data as { guild_id?: unknown; nonce?: unknown }
  if (typeof guild_id !== "string" || typeof nonce !== "string") return undefined
  return { guildId: guild_id, n: Number(nonce) }
}
