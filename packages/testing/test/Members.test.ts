/**
 * Request Guild Members (op 8) against the fake: chunks with the nonce, matching by prefix
 * or id, not_found, and RATE_LIMITED over the configured rate.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { FakeGateway, Traffic } from "../src/index.ts"
import { connect, token } from "./support.ts"

const guild = Traffic.guildIds(1)[0]!

const setup = (config: Partial<FakeGateway.Config>) =>
  Effect.gen(function* () {
    const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 60_000, ...config })
    const client = yield* connect(gateway.connectUrl())
    yield* client.next()
    yield* client.identify()
    return { gateway, client }
  })

describe("FakeGateway Request Guild Members", () => {
  it.live("all members, in chunks of chunkSize, each carrying the nonce", () =>
    Effect.gen(function* () {
      const { client } = yield* setup({ members: { perGuild: 250, chunkSize: 100 } })
      yield* client.send({ op: 8, d: { guild_id: guild, query: "", limit: 0, nonce: "abc" } })
      const chunks = [yield* client.next(), yield* client.next(), yield* client.next()]
      assert.deepStrictEqual(
        chunks.map((c) => [c.t, c.d.chunk_index, c.d.chunk_count, c.d.members.length, c.d.nonce]),
        [
          ["GUILD_MEMBERS_CHUNK", 0, 3, 100, "abc"],
          ["GUILD_MEMBERS_CHUNK", 1, 3, 100, "abc"],
          ["GUILD_MEMBERS_CHUNK", 2, 3, 50, "abc"],
        ],
      )
      assert.strictEqual(chunks[0]!.d.members[0].user.id, Traffic.member(guild, 0).user.id)
    }),
  )

  it.live("by username prefix with a limit, and by ids with not_found", () =>
    Effect.gen(function* () {
      const { client } = yield* setup({ members: { perGuild: 30 } })
      yield* client.send({ op: 8, d: { guild_id: guild, query: "member1", limit: 5 } })
      const byPrefix = yield* client.next()
      assert.deepStrictEqual(
        byPrefix.d.members.map((m: any) => m.user.username),
        ["member1", "member10", "member11", "member12", "member13"],
      )
      const known = Traffic.member(guild, 3).user.id
      yield* client.send({ op: 8, d: { guild_id: guild, user_ids: [known, "42"], nonce: "x".repeat(33) } })
      const byIds = yield* client.next()
      assert.deepStrictEqual(
        byIds.d.members.map((m: any) => m.user.id),
        [known],
      )
      assert.deepStrictEqual(byIds.d.not_found, ["42"])
      assert.notProperty(byIds.d, "nonce", "a nonce over 32 bytes is ignored")
    }),
  )

  it.live("over the request limit: a RATE_LIMITED dispatch instead of chunks", () =>
    Effect.gen(function* () {
      const { client } = yield* setup({
        members: { perGuild: 1, requestLimit: { requests: 1, window: "30 seconds" } },
      })
      yield* client.send({ op: 8, d: { guild_id: guild, query: "", limit: 0, nonce: "one" } })
      assert.strictEqual((yield* client.next()).t, "GUILD_MEMBERS_CHUNK")
      yield* client.send({ op: 8, d: { guild_id: guild, query: "", limit: 0, nonce: "two" } })
      const limited = yield* client.next()
      assert.strictEqual(limited.t, "RATE_LIMITED")
      assert.strictEqual(limited.d.opcode, 8)
      assert.isAbove(limited.d.retry_after, 29)
      assert.deepStrictEqual(limited.d.meta, { guild_id: guild, nonce: "two" })
    }),
  )

  it.live("a malformed request (no guild, neither query nor user_ids): 4002", () =>
    Effect.gen(function* () {
      const { client } = yield* setup({})
      yield* client.send({ op: 8, d: { guild_id: guild } })
      assert.strictEqual((yield* client.closed()).code, 4002)
    }),
  )
})
