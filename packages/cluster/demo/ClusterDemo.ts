/**
 * `npm run demo:cluster`: a bot's shards on three runner processes (`runner.ts`), one
 * PostgreSQL and the FakeGateway, under traffic, through a crash and a restart:
 * 1. three runners join; the cluster places the shards over them;
 * 2. the third runner sends a presence update to every shard (`ShardCommands`): each must
 *    arrive on the socket of whichever runner holds that shard;
 * 3. traffic on every shard; the runner holding the most shards is killed (SIGKILL): its
 *    shards RESUME elsewhere (failover time);
 * 4. another runner holding shards is stopped (SIGTERM: a graceful leave) and started again;
 * 5. the report: placement per runner (from `ClusterHealth`, as any runner reads it), failover
 *    and hand-off times, sent / delivered / lost / duplicated, and the most sockets the gateway
 *    ever saw open for one shard. It passes only if nothing was lost, no shard ever had two
 *    sockets, and nothing was duplicated but the kill's bounded replay (a crash resumes from
 *    the last saved sequence: at most the event in the app's hands and the unsaved window).
 */
import * as crypto from "node:crypto"
import { ClusterHealth, PgDatabase } from "@vigil/cluster"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as Recording from "@vigil/testing/Recording"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as RunnerProcess from "./RunnerProcess.ts"

export interface Options {
  /** The server's URL; the demo makes a database of its own there and drops it at the end. */
  readonly databaseUrl: string
  readonly shards?: number | undefined
  /** Dispatches per second per shard. */
  readonly perSecond?: number | undefined
  /** The runners' `ClusterRunner` timings: `fastTimings` (default) or `defaultTimings`. */
  readonly timings?: "fast" | "default" | undefined
}

export interface Summary {
  readonly ok: boolean
  readonly sent: number
  readonly delivered: number
  readonly lost: number
  /** Delivered more than once in all (the replay after the kill -9 included). */
  readonly duplicated: number
  /** Of those, the ones not explained by the kill's replay window: must be 0. */
  readonly unexplainedDuplicates: number
  readonly maxSocketsPerShard: number
  readonly failoverMillis: number
  readonly handoffMillis: number
  readonly commandsDelivered: number
  readonly identifies: number
  readonly resumes: number
}

const token = "vigil-cluster-demo-token"

/** Runs a statement on the server's own database. */
const onServer = (url: string, statement: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(statement)
  }).pipe(Effect.provide(PgDatabase.layer({ url: Redacted.make(url), maxConnections: 1 })))

/** A database of the demo's own on the server, dropped when the scope closes. */
const demoDatabase = (serverUrl: string) =>
  Effect.gen(function* () {
    const name = `vigil_demo_${crypto.randomBytes(5).toString("hex")}`
    yield* Effect.acquireRelease(onServer(serverUrl, `CREATE DATABASE ${name}`), () =>
      onServer(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(Effect.ignore),
    )
    const url = new URL(serverUrl)
    url.pathname = `/${name}`
    return url.toString()
  })

/** Polls `check` every 50 ms; false once `seconds` have passed. */
const waitUntil = (check: (() => boolean) | Effect.Effect<boolean>, seconds: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + seconds * 1_000
    while (Date.now() < deadline) {
      if (Effect.isEffect(check) ? yield* check : check()) return true
      yield* Effect.sleep(50)
    }
    return false
  })

export const run = (options: Options, print: (line: string) => void = console.log) =>
  Effect.gen(function* () {
    const shards = options.shards ?? 6
    const perSecond = options.perSecond ?? 20
    const t0 = Date.now()
    const say = (line: string) =>
      Effect.sync(() => print(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}`))
    const fail = (why: string) => Effect.die(new Error(why))

    const databaseUrl = yield* demoDatabase(options.databaseUrl)
    const gateway = yield* FakeGateway.make({
      token,
      heartbeatInterval: 1_000,
      shards,
      maxConcurrency: shards,
    })
    const env = {
      DATABASE_URL: databaseUrl,
      GATEWAY_URL: gateway.url,
      TOKEN: token,
      SHARDS: String(shards),
      MAX_CONCURRENCY: String(shards),
      HANDLE_MILLIS: "2",
      TIMINGS: options.timings ?? "fast",
    }
    const expiry = options.timings === "default" ? "6 s" : "3 s"
    const runners: Array<RunnerProcess.RunnerProcess> = []
    const startRunner = (name: string, port: number) =>
      Effect.gen(function* () {
        const runner = yield* RunnerProcess.start({ name, port, env })
        runners.push(runner)
        return runner
      })
    const live = () => runners.filter((r) => !r.exited())
    /** Who runs each shard now: the live runner that started it last. */
    const owners = () => {
      const owner = new Map<number, RunnerProcess.RunnerProcess>()
      const latest = new Map<number, number>()
      for (const r of live()) {
        for (const line of r.starts()) {
          const shard = Number(line.text.split(" ")[1])
          if (line.at >= (latest.get(shard) ?? 0)) {
            latest.set(shard, line.at)
            owner.set(shard, r)
          }
        }
      }
      return owner
    }
    const placement = () =>
      live()
        .map((r) => {
          const mine = [...owners()].filter(([, o]) => o === r).map(([shard]) => shard)
          return `${r.name} (:${r.port}) [${mine.sort((a, b) => a - b).join(", ")}]`
        })
        .join("  ")
    const openSockets = Effect.map(gateway.connections, (all) =>
      all.filter((c) => c.state === "open" && c.authenticated && c.shard !== undefined),
    )
    /** Every shard READY on exactly one socket, and no shard started anywhere for 2 s. */
    const settled = (seconds: number) => {
      let stableSince = Date.now()
      let starts = -1
      return waitUntil(
        Effect.gen(function* () {
          const open = yield* openSockets
          const total = runners.reduce((n, r) => n + r.starts().length, 0)
          const one = new Set(open.map((c) => c.shard![0])).size === shards && open.length === shards
          if (!one || total !== starts) {
            starts = total
            stableSince = Date.now()
          }
          return Date.now() - stableSince >= 2_000
        }),
        seconds,
      )
    }
    /** Until every shard in `which` has RESUMED (or identified) after `since`; the time it took. */
    const resumedAfter = (which: ReadonlyArray<number>, since: number, seconds: number) =>
      Effect.gen(function* () {
        let last = since
        const done = yield* waitUntil(
          Effect.map(gateway.entries, (entries) => {
            const back = entries.filter(
              (e): e is Recording.Resumed | Recording.Identified =>
                (e._tag === "Resumed" || e._tag === "Identified") && e.at >= since,
            )
            return which.every((shard) => {
              const entry = back.find((e) => e.shard[0] === shard)
              if (entry) last = Math.max(last, entry.at)
              return entry !== undefined
            })
          }),
          seconds,
        )
        return done ? last - since : -1
      })

    yield* say(`PostgreSQL: a database of the demo's own (${new URL(databaseUrl).pathname.slice(1)})`)
    yield* say(`FakeGateway on ${gateway.url}; ${shards} shards; 3 runners (sockets on 127.0.0.1)`)
    for (const name of ["a", "b", "c"]) yield* startRunner(name, yield* RunnerProcess.freePort)
    if (!(yield* waitUntil(() => runners.every((r) => r.joined() || r.exited()), 60))) {
      return yield* fail("the runners did not start")
    }
    yield* say(
      `runners joined the cluster: ${runners.map((r) => `${r.name} ${((r.lines.find((l) => l.text.startsWith("joined"))!.at - t0) / 1000).toFixed(1)} s`).join(", ")}`,
    )
    const early = runners.find((r) => r.exited())
    if (early) return yield* fail(`runner ${early.name} exited: ${early.stderr()}`)
    if (!(yield* settled(60))) return yield* fail(`the placement did not settle: ${placement()}`)
    yield* say(`placement settled: ${placement()}`)

    // Commands from anywhere: runner c asks for a presence update on every shard.
    const [a, b, c] = runners as [
      RunnerProcess.RunnerProcess,
      RunnerProcess.RunnerProcess,
      RunnerProcess.RunnerProcess,
    ]
    const before = (yield* gateway.entries).length
    const replies = yield* Effect.forEach(
      Array.from({ length: shards }, (_, shard) => shard),
      (shard) => c.request("presence", String(shard)),
      { concurrency: "unbounded" },
    )
    const presenceFrom = yield* waitUntil(
      Effect.map(gateway.entries, (entries) => {
        const socketShard = Recording.shardOfConnection(entries)
        const got = new Set(
          Recording.received(entries.slice(before), 3).map((e) => socketShard.get(e.connection)),
        )
        return got.size === shards
      }),
      10,
    )
    const commandsDelivered = presenceFrom ? replies.filter((r) => r === "ok").length : 0
    yield* say(
      `runner c sent a presence update to each shard through the cluster: ${commandsDelivered}/${shards} reached the owning runner's socket`,
    )

    // Traffic on every shard until the faults are over.
    const { sent, stop: stopTraffic } = yield* RunnerProcess.trafficOnEveryShard(gateway, shards, perSecond)
    yield* say(`traffic: ${perSecond} MESSAGE_CREATE per second on every shard`)
    yield* Effect.sleep("2 seconds")

    // kill -9 of the runner holding the most shards.
    const counts = (r: RunnerProcess.RunnerProcess) => [...owners().values()].filter((o) => o === r).length
    const victim = [a, b, c].sort((x, y) => counts(y) - counts(x))[0]!
    const victimShards = [...owners()].filter(([, o]) => o === victim).map(([shard]) => shard)
    const killedAt = Date.now()
    victim.child.kill("SIGKILL")
    yield* say(`kill -9 runner ${victim.name} (shards ${victimShards.join(", ")})`)
    const failoverMillis = yield* resumedAfter(victimShards, killedAt, 30)
    if (failoverMillis < 0) return yield* fail(`the shards of ${victim.name} did not come back`)
    yield* say(
      `failover: runner ${victim.name}'s shards RESUMED elsewhere ${failoverMillis} ms after the kill`,
    )
    if (!(yield* settled(30))) return yield* fail(`the placement did not settle: ${placement()}`)
    yield* say(`placement: ${placement()}`)

    // SIGTERM of another runner holding shards, then it starts again on its address.
    const leaving = live().sort((x, y) => counts(y) - counts(x))[0]!
    const leavingShards = [...owners()].filter(([, o]) => o === leaving).map(([shard]) => shard)
    const termAt = Date.now()
    leaving.child.kill("SIGTERM")
    yield* say(`SIGTERM runner ${leaving.name} (shards ${leavingShards.join(", ")}): a graceful leave`)
    const handoffMillis = yield* resumedAfter(leavingShards, termAt, 30)
    if (handoffMillis < 0) return yield* fail(`the shards of ${leaving.name} did not come back`)
    yield* say(
      `hand-off: runner ${leaving.name}'s shards RESUMED elsewhere ${handoffMillis} ms after SIGTERM`,
    )
    yield* waitUntil(leaving.exited, 30)
    const again = yield* startRunner(leaving.name, leaving.port)
    yield* waitUntil(again.joined, 60)
    yield* say(`runner ${leaving.name} started again on :${leaving.port}`)
    if (!(yield* settled(40))) return yield* fail(`the placement did not settle: ${placement()}`)
    yield* Effect.sleep("1 second")
    yield* stopTraffic

    // Every event sent must have been handled somewhere.
    const all = sent
    const key = RunnerProcess.eventKey
    const handled = () => RunnerProcess.handledKeys(runners)
    yield* waitUntil(() => {
      const seen = new Set(handled())
      return all.every((event) => seen.has(key(event)))
    }, 20)
    const delivered = handled()
    const seen = new Set(delivered)
    const lost = all.filter((event) => !seen.has(key(event)))
    // A duplicate the victim handled first is the kill's replay (its save had not caught up).
    const firstBy = new Map<string, RunnerProcess.RunnerProcess>()
    const twice: Array<string> = []
    const inOrder = runners
      .flatMap((r) => r.events().map((event) => ({ r, event })))
      .sort((x, y) => x.event[2] - y.event[2])
    for (const { r, event } of inOrder) {
      if (firstBy.has(key(event))) twice.push(key(event))
      else firstBy.set(key(event), r)
    }
    const unexplained = twice.filter((event) => firstBy.get(event) !== victim)
    const entries = yield* gateway.entries
    const maxSockets = Math.max(0, ...Recording.maxOpenPerShard(entries).values())
    const health = yield* ClusterHealth.make({ owner: "demo" }).pipe(
      Effect.flatMap((h) => h.read),
      Effect.provide(PgDatabase.layer({ url: Redacted.make(databaseUrl), maxConnections: 1 })),
      Effect.orDie,
    )
    const byPort = new Map(live().map((r) => [`127.0.0.1:${r.port}`, r.name]))

    const summary: Summary = {
      ok: lost.length === 0 && unexplained.length === 0 && maxSockets <= 1 && commandsDelivered === shards,
      sent: all.length,
      delivered: seen.size,
      lost: lost.length,
      duplicated: twice.length,
      unexplainedDuplicates: unexplained.length,
      maxSocketsPerShard: maxSockets,
      failoverMillis,
      handoffMillis,
      commandsDelivered,
      identifies: Recording.identifyCount(entries),
      resumes: Recording.resumeCount(entries),
    }
    print("")
    print("== report")
    print("placement (ClusterHealth, as any runner reads it):")
    for (const name of ["a", "b", "c"]) {
      const rows = health.filter((row) => byPort.get(row.owner) === name)
      const text = rows
        .map(
          (row) =>
            `${row.shard[0]} ${row.state}${row.latencyMillis === undefined ? "" : ` ${row.latencyMillis} ms`}`,
        )
        .join(", ")
      const none = name === victim.name ? "none (killed, not restarted)" : "none"
      print(`  runner ${name}: ${rows.length === 0 ? none : text}`)
    }
    print(`failover after kill -9:     ${failoverMillis} ms (lock expiry ${expiry})`)
    print(`hand-off after SIGTERM:     ${handoffMillis} ms`)
    print(`commands from runner c:     ${commandsDelivered}/${shards} reached the owning runner`)
    print(`sent:                       ${summary.sent}`)
    print(`delivered:                  ${summary.delivered}`)
    print(`lost:                       ${summary.lost}`)
    print(
      `duplicated:                 ${summary.duplicated} (${summary.duplicated - summary.unexplainedDuplicates} replayed after the kill -9, ${summary.unexplainedDuplicates} otherwise)`,
    )
    print(`most sockets for one shard: ${maxSockets}`)
    print(`identifies / resumes:       ${summary.identifies} / ${summary.resumes}`)
    print(summary.ok ? "ok: nothing lost, no shard ran twice" : "FAILED")
    return summary
  }).pipe(Effect.scoped)
