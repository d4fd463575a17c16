/**
 * Resharding a cluster of runner processes (`fixtures/reshard-runner.ts`) 2 → 4 under traffic
 * on many guilds: every guild's events handled exactly once and in order across the runners,
 * identifies within the cluster-wide pacing (the fake gateway rejects any sooner), never two
 * sockets for one [id, count], the new shards RESUMEd where the cluster places them (one
 * identify each, ever), and a runner started afterwards runs the new count only.
 */

import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as GuildTraffic from "@vigil/testing/GuildTraffic"
import * as Recording from "@vigil/testing/Recording"
import * as Traffic from "@vigil/testing/Traffic"
import { Effect, Redacted } from "effect"
import * as RunnerProcess from "../demo/RunnerProcess.ts"
import * as TestDatabase from "./TestDatabase.ts"

const token = "cluster-reshard-test-token"
const program = path.join(import.meta.dirname, "fixtures", "reshard-runner.ts")
const guilds = Traffic.guildIds(40, 4)

/** Every shard of `count` on one open, authenticated socket, and no socket of another count. */
const exactlyCount = (gateway: FakeGateway.FakeGatewayService, count: number) =>
  Effect.map(gateway.connections, (all) => {
    const open = all.filter((c) => c.state === "open" && c.authenticated)
    return (
      open.length === count &&
      open.every((c) => c.shard?.[1] === count) &&
      new Set(open.map((c) => c.shard?.[0])).size === count
    )
  })

/** Per [id, count], the most sockets open at once (a socket's shard: what it identified or resumed as). */
const maxOpenPerKey = (entries: ReadonlyArray<Recording.Entry>) => {
  const keyOf = new Map<number, string>()
  for (const entry of entries) {
    if ((entry._tag === "Identified" || entry._tag === "Resumed") && !keyOf.has(entry.connection))
      keyOf.set(entry.connection, `${entry.shard[0]}/${entry.shard[1]}`)
  }
  const open = new Map<string, number>()
  const max = new Map<string, number>()
  for (const entry of entries) {
    if (entry._tag !== "Opened" && entry._tag !== "Closed") continue
    const key = keyOf.get(entry.connection)
    if (key === undefined) continue
    const now = (open.get(key) ?? 0) + (entry._tag === "Opened" ? 1 : -1)
    open.set(key, now)
    max.set(key, Math.max(max.get(key) ?? 0, now))
  }
  return max
}

/** Every `guild <id> <n>` line of the runners, as [guild, n, when]. */
const handled = (runners: ReadonlyArray<RunnerProcess.RunnerProcess>) =>
  runners.flatMap((r) =>
    r.lines
      .filter((line) => line.text.startsWith("guild "))
      .map((line) => {
        const [, guild, n] = line.text.split(" ")
        return [guild!, Number(n), line.at] as const
      }),
  )

describe("a cluster reshard", () => {
  it.live(
    "2 → 4 across runner processes under traffic: each guild's events once and in order, no second socket, the new shards resumed elsewhere",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({
          token,
          heartbeatInterval: 1_000,
          guilds,
          shards: 2,
          maxConcurrency: 4,
        })
        const { url } = yield* TestDatabase.TestDatabase
        const env = {
          DATABASE_URL: Redacted.value(url),
          GATEWAY_URL: gateway.url,
          TOKEN: token,
          SHARDS: "2",
          MAX_CONCURRENCY: "4",
          HANDLE_MILLIS: "1",
        }
        const runners: Array<RunnerProcess.RunnerProcess> = []
        const start = (name: string) =>
          Effect.gen(function* () {
            const runner = yield* RunnerProcess.start({
              name,
              port: yield* RunnerProcess.freePort,
              env,
              program,
            })
            runners.push(runner)
            yield* eventually(runner.joined, `runner ${name} joined`, "40 seconds")
            return runner
          })
        const a = yield* start("a")
        yield* start("b")
        yield* eventually(exactlyCount(gateway, 2), "both shards of 2 up", "30 seconds")
        // Placement settles (a late joiner pulls singletons over) before the reshard.
        yield* Effect.sleep("3 seconds")
        yield* eventually(exactlyCount(gateway, 2), "both shards of 2 up", "30 seconds")

        const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 5 })
        yield* Effect.sleep("1 second")
        const reply = yield* a.request("reshard", "4").pipe(Effect.timeout("120 seconds"))
        assert.match(
          reply,
          /^ok 2 4 \d+$/,
          `the reshard failed: ${reply}\n${a.lines.map((l) => l.text).join("\n")}`,
        )
        const tookMillis = Number(reply.split(" ")[3])
        yield* eventually(exactlyCount(gateway, 4), "the four shards of 4 up, none of 2", "30 seconds")

        // A runner that joins afterwards runs the new count only.
        const c = yield* start("c")
        yield* Effect.sleep("3 seconds")
        yield* eventually(exactlyCount(gateway, 4), "the four shards of 4 up after c joined", "30 seconds")
        yield* Effect.sleep("1 second")
        const log = yield* traffic.stop

        const produced = [...log.produced].flatMap(([guild, ns]) => ns.map((n) => `${guild}/${n}`))
        yield* eventually(
          () => {
            const seen = new Set(handled(runners).map(([g, n]) => `${g}/${n}`))
            return produced.every((key) => seen.has(key))
          },
          "every event handled",
          "20 seconds",
        ).pipe(Effect.ignoreCause)
        const all = handled(runners)
        const keys = all.map(([g, n]) => `${g}/${n}`)
        const seen = new Set(keys)
        assert.isAbove(produced.length, 1000)
        assert.deepStrictEqual(
          produced.filter((key) => !seen.has(key)),
          [],
          "events lost",
        )
        assert.deepStrictEqual(
          keys.filter((key, i) => keys.indexOf(key) !== i),
          [],
          "events handled twice",
        )
        // Per guild, in the order handled (across runners, by when each line came out).
        const outOfOrder: Array<string> = []
        const byGuild = new Map<string, Array<readonly [number, number]>>()
        for (const [g, n, at] of all) byGuild.set(g, [...(byGuild.get(g) ?? []), [n, at]])
        for (const [g, events] of byGuild) {
          const sorted = [...events].sort((x, y) => x[1] - y[1] || x[0] - y[0])
          sorted.forEach(([n], i) => {
            if (i > 0 && n < sorted[i - 1]![0]) outOfOrder.push(`${g}: #${n} after #${sorted[i - 1]![0]}`)
          })
        }
        assert.deepStrictEqual(outOfOrder.slice(0, 5), [], "events out of order")

        const entries = yield* gateway.entries
        const perKey = maxOpenPerKey(entries)
        assert.deepStrictEqual(
          [...perKey].filter(([, n]) => n > 1),
          [],
          "two sockets for one [id, count]",
        )
        assert.deepStrictEqual(
          Recording.only(entries, "Rejected").map((r) => r.reason),
          [],
          "the gateway refused something (an identify too soon?)",
        )
        // 2 at the start, 4 new ones in the waves; every other start RESUMEd.
        assert.strictEqual(Recording.identifyCount(entries), 6, "a move identified instead of resuming")
        const maxOpen = Recording.maxOpen(entries)
        assert.isAtMost(maxOpen, 5, "more connections than the waves plan (M + 1)")
        assert.isFalse(
          c.lines.some((line) => /^started \d+\/2$/.test(line.text)),
          "the late runner started a shard of the old count",
        )
        yield* Effect.logInfo(
          `cluster reshard 2 → 4: ${tookMillis} ms, at most ${maxOpen} sockets open at once, ${produced.length} events`,
        )
        console.log(
          `cluster reshard 2 → 4: ${tookMillis} ms, at most ${maxOpen} sockets open at once (2 before, 4 after), ${produced.length} events over ${guilds.length} guilds`,
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    180_000,
  )
})
