/**
 * `vigil demo`: the embedded FakeGateway (on 127.0.0.1, behind a TCP proxy that can break
 * the link) and the provider (`DiscordProvider`, the way an app runs Vigil) against it,
 * through a scripted storm — zombie, network flap, op 7, Invalid Session, server restart, a
 * burst, and with `reshardTo` a reshard under load (e.g. 2 → 4: a new shard set beside the old,
 * each guild handed over) — with a live status view, then a report. Its exit code is 0 only if
 * every invariant held: nothing lost, nothing twice, in order (per session, and per guild
 * across the reshard).
 */

import type { Protocol } from "@vigil/gateway"
import { NodeGateway } from "@vigil/gateway-node"
import { DiscordProvider, type Health } from "@vigil/provider"
import { FakeGateway, GuildTraffic, Invariants, TcpProxy, Traffic } from "@vigil/testing"
import { Clock, Duration, Effect, Layer, Option, Redacted, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import * as Observability from "./Observability.ts"
import * as Report from "./Report.ts"
import * as Screen from "./Screen.ts"
import * as StatusView from "./StatusView.ts"

export interface DemoOptions {
  readonly shards: number
  /** The fake gateway's heartbeat interval. */
  readonly heartbeatMillis: number
  /** Events in the final burst. */
  readonly burst: number
  /** The count of a last step's reshard under load; 0 (the default) skips it. */
  readonly reshardTo?: number | undefined
}

export const defaults: DemoOptions = { shards: 2, heartbeatMillis: 1_000, burst: 5_000, reshardTo: 0 }

// A fake token for a fake gateway: it only has to match between the two.
const token = "vigil-demo-token-not-a-real-secret"

export const run = (options: DemoOptions = defaults, output: Screen.Output = Screen.stdout) =>
  Effect.scoped(
    Effect.gen(function* () {
      const screen = Screen.make(output)
      const s = Screen.style(output)
      const say = (text: string) => screen.log(text)
      const step = (title: string) => say(`\n${s.bold(s.cyan("▸"))} ${s.bold(title)}`)

      const reshardTo = options.reshardTo ?? 0
      const guilds = Traffic.guildIds(4 * Math.max(options.shards, reshardTo), options.shards)
      const gateway = yield* FakeGateway.make({
        token,
        heartbeatInterval: options.heartbeatMillis,
        shards: options.shards,
        // One identify bucket per shard of either count: the reshard's new shards identify at once.
        maxConcurrency: Math.max(options.shards, reshardTo),
        guilds,
      })
      const proxy = yield* TcpProxy.make({ target: { port: gateway.port } })
      yield* gateway.advertise(proxy.url) // the client connects, and resumes, through the proxy
      yield* say(
        `${s.bold("vigil demo")}: a fake Discord gateway on ${gateway.url}, reached through ${proxy.url}`,
      )

      const report = Report.make()
      // Read as each event is generated, to measure delivery latency against the same Clock.
      const clock = yield* Clock.Clock
      const discord = yield* DiscordProvider.make({
        token: Redacted.make(token),
        intents: 513,
        apiBaseUrl: gateway.httpUrl,
        policy: { backoffBaseMillis: 200, backoffMaxMillis: 2_000 },
      })
      // The provider's streams are hot: consume before starting, to see READY too.
      // Until the reshard, the per-session report; from it on, per guild (sessions change under it).
      let resharding = false
      const guildEvents: Array<Protocol.Dispatch> = []
      yield* Effect.forkScoped(
        Stream.runForEach(discord.events, ({ shardId, dispatch }) =>
          resharding
            ? Effect.sync(() => void guildEvents.push(dispatch))
            : Effect.map(Clock.currentTimeMillis, (now) => report.received(shardId, dispatch, now)),
        ),
      )
      yield* Observability.serveHealth(discord)
      yield* discord.start
      const shardsHealth = Effect.map(discord.health, (h) => h.shards)

      // The live view: redrawn in a terminal, changes only when piped.
      const render = Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const health = yield* shardsHealth
        yield* screen.status(health.map((h) => StatusView.line(h, now, s, output.isTTY)))
      })
      yield* Effect.forkScoped(Effect.forever(Effect.andThen(render, Effect.sleep(output.isTTY ? 150 : 50))))

      const waitFor = (
        what: string,
        check: (health: ReadonlyArray<Health.ShardReport>) => boolean,
        seconds = 30,
      ) =>
        Effect.gen(function* () {
          for (let i = 0; i < seconds * 20; i++) {
            if (check(yield* shardsHealth)) return
            yield* Effect.sleep(50)
          }
          yield* say(s.red(`  gave up waiting for ${what}`))
        })
      const allReady = (health: ReadonlyArray<Health.ShardReport>) =>
        health.length === options.shards && health.every((h) => h.state._tag === "Ready")
      const counter =
        (pick: (h: Health.ShardReport) => number, shard: number, atLeast: number) =>
        (all: ReadonlyArray<Health.ShardReport>) => {
          const h = all.find((x) => x.shardId === shard)
          return h !== undefined && pick(h) >= atLeast
        }
      const traffic = (count: number, perSecond?: number) =>
        Effect.forEach(
          Array.from({ length: options.shards }, (_, shard) => shard),
          (shard) =>
            gateway.emit(
              { shard },
              {
                count,
                perSecond,
                data: (i) => ({ ...Traffic.messageCreate(i), sent_at: clock.currentTimeMillisUnsafe() }),
              },
            ),
          { concurrency: "unbounded", discard: true },
        ).pipe(Effect.ignore)
      const health = (shard: number) =>
        Effect.map(shardsHealth, (all) => all.find((h) => h.shardId === shard)!)

      yield* step(`connecting ${options.shards} shards (identify buckets, READY)`)
      yield* waitFor("READY", allReady)
      yield* traffic(100, 500)

      yield* step("zombie: shard 0's heartbeats stop being ACKed")
      const before0 = yield* health(0)
      yield* gateway.stopAcks({ shard: 0 })
      yield* Effect.forkScoped(traffic(200, 100))
      yield* waitFor(
        "the zombie to be detected and resumed",
        counter((h) => h.resumes, 0, before0.resumes + 1),
      )
      yield* say(
        `  detected as ${(yield* health(0)).lastError?.tag}; closed with a resumable code and resumed`,
      )

      yield* step("network flap: the TCP link is cut under every shard")
      const resumesBefore = (yield* shardsHealth).map((h) => h.resumes)
      yield* proxy.cut
      yield* proxy.refuse(true)
      yield* Effect.sleep(700)
      yield* proxy.refuse(false)
      yield* waitFor("every shard to resume", (all) => all.every((h, i) => h.resumes > resumesBefore[i]!))
      yield* say("  every shard resumed; events sent meanwhile were replayed")

      yield* step("op 7: the server asks shard 1 to reconnect")
      const shardForOp7 = Math.min(1, options.shards - 1)
      const before7 = yield* health(shardForOp7)
      yield* gateway.reconnect({ shard: shardForOp7 })
      yield* waitFor(
        "the reconnect",
        counter((h) => h.resumes, shardForOp7, before7.resumes + 1),
      )
      yield* say(`  shard ${shardForOp7} closed with a resumable code and resumed`)

      yield* step("Invalid Session (not resumable) on shard 0: wait 1–5 s, identify a new session")
      const before9 = yield* health(0)
      yield* gateway.invalidSession({ shard: 0 }, false)
      yield* waitFor(
        "a new session",
        counter((h) => h.identifies, 0, before9.identifies + 1),
      )
      yield* say(`  shard 0 identified afresh: session ${(yield* health(0)).sessionId}`)

      yield* step("server restart: the gateway process dies and comes back with its sessions")
      const beforeRestart = (yield* shardsHealth).map((h) => h.resumes)
      yield* gateway.restart({ sessions: "keep", downtime: Duration.millis(500) })
      yield* waitFor("every shard to resume", (all) => all.every((h, i) => h.resumes > beforeRestart[i]!))
      yield* say("  every shard resumed its session after the restart")

      yield* step(`burst: ${options.burst} events per shard, as fast as the server can send`)
      yield* traffic(options.burst)

      yield* step("settling: waiting for every event to arrive")
      const sessions = yield* gateway.sessions
      yield* waitFor("delivery", () => report.caughtUp(sessions), 30)
      const stormed = report.summary(yield* gateway.sessions, yield* shardsHealth)

      let reshard: Report.ReshardSummary | undefined
      if (reshardTo > 0 && reshardTo !== options.shards) {
        yield* step(
          `reshard ${options.shards} → ${reshardTo} under load: a new set beside the old, each guild handed over`,
        )
        resharding = true
        const load = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 50 })
        yield* Effect.sleep(300)
        const outcome = yield* Effect.exit(discord.reshard(reshardTo))
        yield* Effect.sleep(300)
        const log = yield* load.stop
        let checked = Invariants.perGuild(log.produced, guildEvents)
        for (let i = 0; i < 200 && checked.lost > 0; i++) {
          yield* Effect.sleep(50)
          checked = Invariants.perGuild(log.produced, guildEvents)
        }
        const manager = Option.getOrUndefined(yield* discord.manager)
        const status = manager === undefined ? undefined : (yield* manager.reshardStatus).last
        reshard = {
          from: options.shards,
          to: reshardTo,
          completed: outcome._tag === "Success",
          tookMillis: status?.tookMillis,
          sent: log.sent,
          sentTwice: log.copies - log.sent,
          lost: checked.lost,
          duplicated: checked.duplicated,
          outOfOrder: checked.outOfOrder,
        }
        yield* say(
          outcome._tag === "Success"
            ? `  ${log.sent} events over ${guilds.length} guilds, ${log.copies - log.sent} sent to both sessions; old set closed ${status?.tookMillis} ms after the start`
            : s.red(`  the reshard failed: ${String(outcome.cause)}`),
        )
      }
      yield* render
      yield* screen.done

      const summary = Report.withReshard(stormed, reshard)
      yield* say(`\n${Report.format(summary, s)}`)
      return summary
    }),
  ).pipe(Effect.provide(Layer.merge(NodeGateway.layer(), FetchHttpClient.layer)))
