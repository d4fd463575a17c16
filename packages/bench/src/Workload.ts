/**
 * The bench workload: a deterministic, realistic dispatch mix, and its encodings as a Discord
 * gateway would send them (`json` text frames; `zlib-stream` one deflate context with a
 * Z_SYNC_FLUSH per message; `zstd-stream` one zstd frame flushed per message). Every client
 * receives the very same bytes.
 */
import * as zlib from "node:zlib"
import { guildCreate, guildIds, member, snowflake } from "@vigil/testing/Traffic"

export type Encoding = "json" | "zlib-stream" | "zstd-stream"
export const encodings: ReadonlyArray<Encoding> = ["json", "zlib-stream", "zstd-stream"]

/** A small seeded PRNG (mulberry32): the same workload on every run and machine. */
export const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const words = (
  "the a to and of gateway shard event message presence typing guild channel member role " +
  "bot hello ok yes no lol thanks please why when how what deploy build test release fix " +
  "bug works broken again today tomorrow later soon now here there this that"
).split(" ")

export interface MixOptions {
  /** One GUILD_CREATE every `guildCreateEvery` dispatches (the rest: small events). */
  readonly guildCreateEvery?: number
  /** Members in each GUILD_CREATE: 300 gives ~100 KB of JSON. */
  readonly guildMembers?: number
  readonly seed?: number
}

/** A dispatch's `t` and `d`; `s` is given when it is sent. */
export interface Dispatch {
  readonly t: string
  readonly d: Record<string, unknown>
}

/**
 * `count` dispatches: ~45% MESSAGE_CREATE, ~35% PRESENCE_UPDATE, ~20% TYPING_START, and a
 * large GUILD_CREATE every `guildCreateEvery`.
 */
export const dispatchMix = (count: number, options: MixOptions = {}): ReadonlyArray<Dispatch> => {
  const rand = random(options.seed ?? 42)
  const every = options.guildCreateEvery ?? 500
  const guilds = guildIds(64)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rand() * xs.length)] as A
  const sentence = (n: number) => Array.from({ length: n }, () => pick(words)).join(" ")
  const out: Array<Dispatch> = []
  for (let i = 0; i < count; i++) {
    const guildId = pick(guilds)
    const userIndex = Math.floor(rand() * 5000)
    const user = member(guildId, userIndex).user
    const channelId = (BigInt(guildId) + 3_000_001n + BigInt(Math.floor(rand() * 20))).toString()
    const roll = rand()
    if (every > 0 && i % every === every - 1) {
      out.push({
        t: "GUILD_CREATE",
        d: guildCreate(guildId, { members: options.guildMembers ?? 300, channels: 40, roles: 15 }),
      })
    } else if (roll < 0.45) {
      out.push({
        t: "MESSAGE_CREATE",
        d: {
          id: snowflake(1_700_000_000_000 + i, i),
          channel_id: channelId,
          guild_id: guildId,
          author: { ...user, public_flags: 0, avatar_decoration_data: null },
          member: {
            roles: [],
            joined_at: "2024-01-01T00:00:00.000000+00:00",
            deaf: false,
            mute: false,
            flags: 0,
          },
          content: sentence(3 + Math.floor(rand() * 25)),
          timestamp: new Date(1_700_000_000_000 + i * 37).toISOString(),
          edited_timestamp: null,
          tts: false,
          mention_everyone: false,
          mentions: [],
          mention_roles: [],
          attachments: [],
          embeds: [],
          pinned: false,
          type: 0,
          flags: 0,
          components: [],
          nonce: String(1_000_000_000 + i),
        },
      })
    } else if (roll < 0.8) {
      const status = pick(["online", "idle", "dnd", "offline"])
      out.push({
        t: "PRESENCE_UPDATE",
        d: {
          user: { id: user.id },
          guild_id: guildId,
          status,
          activities:
            rand() < 0.5
              ? [
                  {
                    name: sentence(2),
                    type: pick([0, 2, 3]),
                    created_at: 1_700_000_000_000 + i,
                    id: "custom",
                  },
                ]
              : [],
          client_status: { [pick(["desktop", "mobile", "web"])]: status },
        },
      })
    } else {
      out.push({
        t: "TYPING_START",
        d: {
          user_id: user.id,
          timestamp: 1_700_000_000 + i,
          member: {
            user,
            roles: [],
            joined_at: "2024-01-01T00:00:00.000000+00:00",
            deaf: false,
            mute: false,
            flags: 0,
          },
          channel_id: channelId,
          guild_id: guildId,
        },
      })
    }
  }
  return out
}

/** A dispatch as the gateway sends it, with sequence `s`. */
export const payloadText = (dispatch: Dispatch, s: number): string =>
  JSON.stringify({ op: 0, t: dispatch.t, s, d: dispatch.d })

/**
 * A streaming compressor as Discord runs one per connection: each `push` returns one
 * message's bytes, flushed (zlib: ends with 00 00 ff ff; zstd: flushed, frame kept open).
 */
export interface StreamCompressor {
  readonly push: (text: string) => Promise<Uint8Array>
  readonly close: () => void
}

export const makeCompressor = (encoding: Exclude<Encoding, "json">): StreamCompressor => {
  const stream =
    encoding === "zlib-stream"
      ? zlib.createDeflate({ chunkSize: 64 * 1024 })
      : zlib.createZstdCompress({ chunkSize: 64 * 1024 })
  const flushKind = encoding === "zlib-stream" ? zlib.constants.Z_SYNC_FLUSH : zlib.constants.ZSTD_e_flush
  let pending: Array<Buffer> = []
  stream.on("data", (chunk: Buffer) => pending.push(chunk))
  return {
    push: (text) =>
      new Promise((resolve) => {
        stream.write(text)
        stream.flush(flushKind, () => {
          const out = Buffer.concat(pending)
          pending = []
          resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
        })
      }),
    close: () => stream.destroy(),
  }
}

/** Encodes `texts` as one connection's stream would carry them, one frame per message. */
export const encodeStream = async (
  encoding: Exclude<Encoding, "json">,
  texts: ReadonlyArray<string>,
): Promise<Array<Uint8Array>> => {
  const compressor = makeCompressor(encoding)
  const frames: Array<Uint8Array> = []
  for (const text of texts) frames.push(await compressor.push(text))
  compressor.close()
  return frames
}

/** What `GET /gateway/bot` says for the 1,000-shard runs: every client gets the same answer. */
export const manyGatewayBot = (options: {
  readonly url: string
  readonly count: number
  readonly maxConcurrency: number
}) => ({
  url: options.url,
  shards: options.count,
  session_start_limit: {
    total: 100_000,
    remaining: 100_000,
    reset_after: 0,
    max_concurrency: options.maxConcurrency,
  },
})
