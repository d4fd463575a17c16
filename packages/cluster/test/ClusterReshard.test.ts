/**
 * Resharding a cluster of runner processes (`fixtures/reshard-runner.ts`) under traffic on
 * many guilds:
 * - 2 → 4 completed, both waves at once, with the runner of a wave stopped (SIGTERM) mid-wave
 *   and started again: every guild's events handled exactly once and in order across the
 *   runners, identifies within the cluster-wide pacing (the fake gateway rejects any sooner),
 *   never two sockets for one [id, count], the stopped wave carried out again, the new shards
 *   RESUMEd where the cluster places them, and a runner started afterwards runs the new count
 *   only;
 * - rolled back: the gateway refuses the new shards' identifies, each wave attempt (one wave at
 *   a time) is rolled back, the reshard fails typed, the old count serves on, still exactly once;
 * - runners killed in the middle of waves: each wave is carried out again (or committed) on
 *   another runner and the reshard completes; nothing lost (what a killed runner's app had
 *   handled may come again);
 * - 3 → 5 and back to 3, neither a multiple: each one whole-set wave in one runner, exactly
 *   once and in order;
 * - a 4011 (the gateway closes both shards: too many guilds) reshards the cluster by itself to
 *   the recommended count, and the guilds come back on the new shards, each event once.
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

/** Per [id, count], how each of its sockets began, in order: `I` an identify, `R` a resume. */
const starts = (entries: ReadonlyArray<Recording.Entry>) => {
  const byKey = new Map<string, string>()
  for (const entry of entries) {
    if (entry._tag !== "Identified" && entry._tag !== "Resumed") continue
    const key = `${entry.shard[0]}/${entry.shard[1]}`
    byKey.set(key, (byKey.get(key) ?? "") + (entry._tag === "Identified" ? "I" : "R"))
  }
  return byKey
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

/** The consumed events' keys, and per guild the numbers out of order (first handling of each, by when). */
const check = (runners: ReadonlyArray<RunnerProcess.RunnerProcess>) => {
  const all = handled(runners)
  const keys = all.map(([g, n]) => `${g}/${n}`)
  const outOfOrder: Array<string> = []
  const byGuild = new Map<string, Array<readonly [number, number]>>()
  const first = new Set<string>()
  for (const [g, n, at] of all) {
    if (first.has(`${g}/${n}`)) continue
    first.add(`${g}/${n}`)
    byGuild.set(g, [...(byGuild.get(g) ?? []), [n, at]])
  }
  for (const [g, events] of byGuild) {
    // Across runners, by when each line came out (a moved guild's next owner starts after the last one drained).
    const sorted = [...events].sort((x, y) => x[1] - y[1] || x[0] - y[0])
    sorted.forEach(([n], i) => {
      if (i > 0 && n < sorted[i - 1]![0]) outOfOrder.push(`${g}: #${n} after #${sorted[i - 1]![0]}`)
    })
  }
  return { keys, twice: keys.filter((key, i) => keys.indexOf(key) !== i), outOfOrder }
}

interface Setup {
  readonly runners: ReadonlyArray<string>
  /** The cluster's first count. Default 2. */
  readonly shards?: number
  readonly env?: Record<string, string>
  readonly sessionStartLimit?: { readonly total: number; readonly remaining: number }
  /** Identify buckets (default 4: a wave's two new shards identify at once). */
  readonly maxConcurrency?: number
}

const cluster = (setup: Setup) =>
  Effect.gen(function* () {
    // Discord's window, counted from arrival: the throttle's 250 ms margin covers the trip's jitter.
    const gateway = yield* FakeGateway.make({
      token,
      heartbeatInterval: 1_000,
      guilds,
      shards: setup.shards ?? 2,
      maxConcurrency: setup.maxConcurrency ?? 4,
      identifyWindow: "5000 millis",
      sessionStartLimit: setup.sessionStartLimit,
    })
    const { url } = yield* TestDatabase.TestDatabase
    const env = {
      DATABASE_URL: Redacted.value(url),
      GATEWAY_URL: gateway.url,
      API_BASE_URL: gateway.httpUrl,
      TOKEN: token,
      SHARDS: String(setup.shards ?? 2),
      MAX_CONCURRENCY: String(setup.maxConcurrency ?? 4),
      HANDLE_MILLIS: "1",
      ...setup.env,
    }
    const runners: Array<RunnerProcess.RunnerProcess> = []
    const launch = (name: string) =>
      Effect.gen(function* () {
        const runner = yield* RunnerProcess.start({ name, port: yield* RunnerProcess.freePort, env, program })
        runners.push(runner)
        return runner
      })
    const joined = (runner: RunnerProcess.RunnerProcess) =>
      eventually(runner.joined, `runner ${runner.name} joined`, "40 seconds")
    const start = (name: string) => Effect.tap(launch(name), joined)
    // All at once (the placement settles below either way).
    const launched = yield* Effect.forEach(setup.runners, launch)
    yield* Effect.forEach(launched, joined, { concurrency: "unbounded", discard: true })
    const first = setup.shards ?? 2
    yield* eventually(exactlyCount(gateway, first), "every shard of the first count up", "30 seconds")
    // Placement settles (a late joiner pulls singletons over) before the reshard.
    yield* Effect.sleep("3 seconds")
    yield* eventually(exactlyCount(gateway, first), "every shard of the first count up", "30 seconds")
    const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 5 })
    yield* Effect.sleep("1 second")

    /** Stops the traffic and waits (a while) for every event it produced to be handled. */
    const finish = Effect.gen(function* () {
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
      const result = check(runners)
      const seen = new Set(result.keys)
      return { ...result, produced, lost: produced.filter((key) => !seen.has(key)) }
    })
    return { gateway, runners, start, finish }
  })

/** The old shards whose wave started on `runner`, in order. */
const waveStarts = (runner: RunnerProcess.RunnerProcess) =>
  runner.lines.flatMap((l) => /reshard wave (\d+)\/2 → 4: starting/.exec(l.text)?.[1] ?? [])

const lines = (runner: RunnerProcess.RunnerProcess) => runner.lines.map((line) => line.text).join("\n")

describe("a cluster reshard", () => {
  it.live(
    "2 → 4 across runner processes under traffic, both waves at once, a runner stopped (SIGTERM) mid-wave and started again: each guild's events once and in order, no second socket, the new shards resumed elsewhere",
    () =>
      Effect.gen(function* () {
        const { gateway, runners, start, finish } = yield* cluster({
          runners: ["a", "b", "c"],
          // Two buckets: a wave's second new shard waits a 5 s window, long enough to stop its runner then.
          maxConcurrency: 2,
          // Both waves at once (the stopped one's reruns beside the other).
          env: { PARALLEL_WAVES: "2" },
        })
        yield* Effect.sync(() => runners[0]!.child.stdin?.write("reshard 0 4\n"))
        let stopped: RunnerProcess.RunnerProcess | undefined
        yield* eventually(
          () => {
            stopped = runners.find((r) => waveStarts(r).length > 0)
            return stopped !== undefined
          },
          "a wave started",
          "30 seconds",
        )
        const wave = waveStarts(stopped!)[0]!
        yield* Effect.sleep("1500 millis")
        stopped!.child.kill("SIGTERM")
        yield* eventually(stopped!.exited, "the runner stopped", "20 seconds")
        assert.isFalse(
          stopped!.lines.some((l) => l.text.includes(`wave ${wave}/2 → 4: done`)),
          "the wave was done before the stop",
        )
        // A deploy: the same runner back while the reshard runs.
        yield* start(stopped!.name)
        const witness = runners.find((r) => !r.exited())!
        let status = ""
        yield* eventually(
          Effect.map(witness.request("status"), (s) => {
            status = s
            return s.includes(`"count":4`)
          }),
          "the reshard completed",
          "120 seconds",
        )
        const tookMillis = Math.round(Number(/"tookMillis":([\d.]+)/.exec(status)?.[1]))
        yield* eventually(exactlyCount(gateway, 4), "the four shards of 4 up, none of 2", "30 seconds")

        // A runner that joins afterwards runs the new count only.
        const late = yield* start("d")
        yield* Effect.sleep("2 seconds")
        yield* eventually(exactlyCount(gateway, 4), "the four shards of 4 up after d joined", "30 seconds")
        const result = yield* finish

        assert.isAbove(result.produced.length, 1000)
        assert.deepStrictEqual(result.lost, [], "events lost")
        assert.deepStrictEqual(result.twice, [], "events handled twice")
        assert.deepStrictEqual(result.outOfOrder.slice(0, 5), [], "events out of order")
        const entries = yield* gateway.entries
        assert.deepStrictEqual(
          [...maxOpenPerKey(entries)].filter(([, n]) => n > 1),
          [],
          "two sockets for one [id, count]",
        )
        assert.deepStrictEqual(
          Recording.only(entries, "Rejected").map((r) => r.reason),
          [],
          "the gateway refused something (an identify too soon?)",
        )
        assert.isTrue(
          runners.some((r) => r !== stopped && waveStarts(r).includes(wave)),
          "the stopped wave was not carried out again",
        )
        // The old shards identified once, ever; each new shard serves on a RESUME of what its wave began.
        const began = starts(entries)
        assert.deepStrictEqual(
          ["0/2", "1/2"].map((key) => began.get(key)?.lastIndexOf("I")),
          [0, 0],
          "an old shard identified again",
        )
        assert.deepStrictEqual(
          ["0/4", "1/4", "2/4", "3/4"].map((key) => began.get(key)?.at(-1)),
          ["R", "R", "R", "R"],
          "a new shard serves on an identify of its own",
        )
        // And no identify but the waves': at most two new shards per wave started (the stopped one may have had one).
        const waves = runners.flatMap(waveStarts).length
        assert.isAtMost(Recording.identifyCount(entries), 2 + 2 * waves, "an identify outside the waves")
        const maxOpen = Recording.maxOpen(entries)
        assert.isAtMost(maxOpen, 6, "more connections than two waves at once plan (N + M)")
        assert.isFalse(
          late.lines.some((line) => /^started \d+\/2$/.test(line.text)),
          "the late runner started a shard of the old count",
        )
        console.log(
          `cluster reshard 2 → 4: ${tookMillis} ms with a runner stopped mid-wave (${waves} wave starts), at most ${maxOpen} sockets open at once (2 before, 4 after; two waves at once), ${result.produced.length} events over ${guilds.length} guilds`,
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    180_000,
  )

  it.live(
    "the new shards' identifies refused: every wave attempt rolled back, the reshard fails typed, the old count serves on, exactly once",
    () =>
      Effect.gen(function* () {
        const { gateway, runners, finish } = yield* cluster({
          runners: ["a", "b"],
          // The two first identifies spend the day's budget: every new shard is refused.
          sessionStartLimit: { total: 2, remaining: 2 },
          env: { WAVE_TIMEOUT_MILLIS: "3000", WAVE_ATTEMPTS: "2" },
        })
        const a = runners[0]!
        const reply = yield* a.request("reshard", "4").pipe(Effect.timeout("120 seconds"))
        assert.match(reply, /^error ClusterReshardFailed .*rolled back$/, `${reply}\n${lines(a)}`)
        const status = yield* a.request("status")
        assert.include(status, `"count":2`)
        assert.include(status, `"phase":"failed"`)
        yield* eventually(exactlyCount(gateway, 2), "both shards of 2 serve again", "30 seconds")
        yield* Effect.sleep("1 second")
        const result = yield* finish

        assert.isAbove(result.produced.length, 500)
        assert.deepStrictEqual(result.lost, [], "events lost")
        assert.deepStrictEqual(result.twice, [], "events handled twice")
        assert.deepStrictEqual(result.outOfOrder.slice(0, 5), [], "events out of order")
        const entries = yield* gateway.entries
        assert.deepStrictEqual(
          [...maxOpenPerKey(entries)].filter(([, n]) => n > 1),
          [],
          "two sockets for one [id, count]",
        )
        assert.strictEqual(Recording.identifyCount(entries), 2, "only the first two shards ever identified")
        assert.isAtMost(Recording.maxOpen(entries), 5, "more connections than one wave at a time (M + 1)")
        const attempts = runners
          .flatMap((r) => r.lines)
          .filter((l) => /reshard wave \d+\/2 → 4 failed/.test(l.text))
        assert.strictEqual(attempts.length, 2, "one wave, tried twice")
      }).pipe(Effect.provide(TestDatabase.fresh)),
    180_000,
  )

  it.live(
    "runners killed in the middle of waves (before and as the old shard retires): each wave completes elsewhere; nothing lost",
    () =>
      Effect.gen(function* () {
        const { gateway, runners, finish } = yield* cluster({
          runners: ["a", "b", "c"],
          // Two buckets: a wave's second new shard waits a 5 s window, long enough to kill its runner then.
          maxConcurrency: 2,
        })
        yield* Effect.sync(() => runners[0]!.child.stdin?.write("reshard 0 4\n"))

        // 1. Before its old shard retires: the wave is carried out anew on another runner.
        let first: RunnerProcess.RunnerProcess | undefined
        yield* eventually(
          () => {
            first = runners.find((r) => waveStarts(r).length > 0)
            return first !== undefined
          },
          "a wave started",
          "30 seconds",
        )
        const firstWave = Number(waveStarts(first!)[0])
        yield* Effect.sleep("1500 millis")
        first!.child.kill("SIGKILL")
        yield* eventually(first!.exited, "the first runner died", "10 seconds")

        // 2. As the other wave's old shard retires (a resumable close, 4900, after its new shards
        // identified): the wave is marked handed (its new sessions carry on) or not yet (redone
        // from the old session, resumable), depending on where the kill lands.
        const otherWave = 1 - firstWave
        let second: RunnerProcess.RunnerProcess | undefined
        yield* eventually(
          () => {
            second = runners.find((r) => !r.exited() && waveStarts(r).includes(String(otherWave)))
            return second !== undefined
          },
          "the other wave started",
          "90 seconds",
        )
        yield* eventually(
          Effect.map(gateway.entries, (entries) => {
            const old = new Set(
              entries.flatMap((e) =>
                (e._tag === "Identified" || e._tag === "Resumed") &&
                e.shard[0] === otherWave &&
                e.shard[1] === 2
                  ? [e.connection]
                  : [],
              ),
            )
            const joined = entries.findIndex(
              (e) => e._tag === "Identified" && e.shard[1] === 4 && e.shard[0] % 2 === otherWave,
            )
            return (
              joined >= 0 &&
              entries.some(
                (e, i) => i > joined && e._tag === "Closed" && e.code === 4900 && old.has(e.connection),
              )
            )
          }),
          "the other wave's old shard retired",
          "60 seconds",
        )
        second!.child.kill("SIGKILL")
        yield* eventually(second!.exited, "the second runner died", "10 seconds")
        const landed = second!.lines.some((l) => l.text.includes(`wave ${otherWave}/2 → 4: done`))
          ? "after its commit"
          : "before its commit"

        const witness = runners.find((r) => !r.exited())!
        yield* eventually(
          Effect.map(witness.request("status"), (s) => s.includes(`"count":4`)),
          "the reshard completed",
          "120 seconds",
        )
        yield* eventually(exactlyCount(gateway, 4), "the four shards of 4 up, none of 2", "30 seconds")
        yield* Effect.sleep("1 second")
        const result = yield* finish

        assert.isAbove(result.produced.length, 1000)
        assert.deepStrictEqual(result.lost, [], "events lost")
        assert.deepStrictEqual(result.outOfOrder.slice(0, 5), [], "events out of order")
        const entries = yield* gateway.entries
        assert.deepStrictEqual(
          [...maxOpenPerKey(entries)].filter(([, n]) => n > 1),
          [],
          "two sockets for one [id, count]",
        )
        assert.deepStrictEqual(
          Recording.only(entries, "Rejected").map((r) => r.reason),
          [],
          "the gateway refused something (an identify too soon?)",
        )
        assert.isTrue(
          runners.some((r) => r !== first && waveStarts(r).includes(String(firstWave))),
          "the killed wave was not carried out again elsewhere",
        )
        console.log(
          `killed mid-wave: the second kill landed ${landed}; ${result.twice.length} events handled twice (replayed after the kills), ${Recording.identifyCount(entries)} identifies`,
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    240_000,
  )

  it.live(
    "3 → 5 and back to 3 (neither a multiple) across runner processes under traffic: each a whole-set wave in one runner, each guild's events once and in order",
    () =>
      Effect.gen(function* () {
        const { gateway, runners, finish } = yield* cluster({ runners: ["a", "b"], shards: 3 })
        const all = () => runners.map(lines).join("\n")
        const grown = yield* runners[0]!.request("reshard", "5").pipe(Effect.timeout("120 seconds"))
        assert.match(grown, /^ok 3 5 \d+$/, `the reshard failed: ${grown}\n${all()}`)
        yield* eventually(exactlyCount(gateway, 5), "the five shards of 5 up, none of 3", "30 seconds")
        // Fewer shards the same way (the new [x, 3] are the old keys again, under new epochs).
        const shrunk = yield* runners[1]!.request("reshard", "3").pipe(Effect.timeout("120 seconds"))
        assert.match(shrunk, /^ok 5 3 \d+$/, `the shrink failed: ${shrunk}\n${all()}`)
        yield* eventually(exactlyCount(gateway, 3), "the three shards of 3 up, none of 5", "30 seconds")
        yield* Effect.sleep("1 second")
        const result = yield* finish

        assert.isAbove(result.produced.length, 1000)
        assert.deepStrictEqual(result.lost, [], "events lost")
        assert.deepStrictEqual(result.twice, [], "events handled twice")
        assert.deepStrictEqual(result.outOfOrder.slice(0, 5), [], "events out of order")
        const entries = yield* gateway.entries
        assert.deepStrictEqual(
          [...maxOpenPerKey(entries)].filter(([, n]) => n > 1),
          [],
          "two sockets for one [id, count]",
        )
        assert.deepStrictEqual(
          Recording.only(entries, "Rejected").map((r) => r.reason),
          [],
          "the gateway refused something (an identify too soon?)",
        )
        const waves = runners.flatMap((r) =>
          r.lines.filter((l) => /reshard wave \(whole set\) (3 → 5|5 → 3): starting/.test(l.text)),
        )
        assert.strictEqual(waves.length, 2, "one whole-set wave per reshard")
        // Each shard's sockets, in order: the first 3 identified once, then resumed into the
        // wave; each of 5 identified in the wave, then resumed by its singleton; and again to 3.
        const began = starts(entries)
        assert.deepStrictEqual(
          ["0/5", "1/5", "2/5", "3/5", "4/5"].map((key) => began.get(key)?.[0]),
          ["I", "I", "I", "I", "I"],
        )
        assert.deepStrictEqual(
          ["0/3", "1/3", "2/3", "0/5", "1/5", "2/5", "3/5", "4/5"].map((key) => began.get(key)?.at(-1)),
          ["R", "R", "R", "R", "R", "R", "R", "R"],
          "a shard serves on an identify of its own",
        )
        assert.strictEqual(Recording.identifyCount(entries), 3 + 5 + 3, "an identify outside the waves")
        const maxOpen = Recording.maxOpen(entries)
        assert.isAtMost(maxOpen, 8, "more connections than the whole set (N + M)")
        console.log(
          `cluster reshard 3 → 5 → 3 (whole set): ${grown.split(" ")[3]} ms and ${shrunk.split(" ")[3]} ms, at most ${maxOpen} sockets open at once, ${result.produced.length} events over ${guilds.length} guilds`,
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    180_000,
  )

  it.live(
    "a 4011 on the serving shards reshards the cluster to the recommended count; every event sent reaches the app once",
    () =>
      Effect.gen(function* () {
        const { gateway, runners, finish } = yield* cluster({
          runners: ["a", "b"],
          env: { AUTO_RESHARD: "1" },
        })
        yield* gateway.setRecommendedShards(4)
        // The bot grew: 20 guilds per shard is over the limit, both sessions end with 4011.
        const closedAt = Date.now()
        const closed = yield* gateway.setMaxGuildsPerShard(15, { enforce: true })
        assert.strictEqual(closed.length, 2)
        yield* eventually(
          Effect.map(runners[0]!.request("status"), (s) => s.includes(`"count":4`)),
          "the cluster resharded to 4",
          "120 seconds",
        )
        yield* eventually(exactlyCount(gateway, 4), "the four shards of 4 up, none of 2", "30 seconds")
        const offlineMillis = Date.now() - closedAt
        yield* Effect.sleep("1 second")
        const result = yield* finish

        assert.isAbove(result.produced.length, 500)
        assert.deepStrictEqual(result.lost, [], "events lost")
        assert.deepStrictEqual(result.twice, [], "events handled twice")
        assert.deepStrictEqual(result.outOfOrder.slice(0, 5), [], "events out of order")
        const entries = yield* gateway.entries
        assert.deepStrictEqual(
          [...maxOpenPerKey(entries)].filter(([, n]) => n > 1),
          [],
          "two sockets for one [id, count]",
        )
        const triggered = runners.flatMap((r) => r.lines).filter((l) => l.text.includes("closed with 4011"))
        assert.isAtLeast(triggered.length, 1, "no 4011-triggered reshard logged")
        console.log(
          `4011: resharded 2 → 4, the four new shards serving ${offlineMillis} ms after the 4011s, ${result.produced.length} events`,
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    180_000,
  )
})
