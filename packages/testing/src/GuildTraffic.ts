/**
 * A traffic generator over many guilds for a `FakeGateway`: round after round, one
 * `Traffic.guildMessage` per guild, each carrying the guild's own next number, sent to every
 * live session holding the guild (`dispatchToGuild`: both sessions while a reshard runs two
 * shard counts). Its log says what the gateway produced per guild, for `Invariants.perGuild`.
 *
 * ```ts
 * const traffic = yield* GuildTraffic.start(gateway, { guilds, roundsPerSecond: 20 })
 * // ... reshard under load ...
 * const log = yield* traffic.stop
 * Invariants.perGuild(log.produced, consumed)
 * ```
 */
import { Deferred, Duration, Effect, Fiber, type Scope } from "effect"
import type { FakeGatewayService } from "./FakeGateway.ts"
import * as Traffic from "./Traffic.ts"

export interface Options {
  readonly guilds: ReadonlyArray<string>
  /** Rounds (one event per guild) per second; omitted, as fast as the sockets take them. */
  readonly roundsPerSecond?: number | undefined
  /** Stop by itself after this many rounds. Default: until `stop`. */
  readonly rounds?: number | undefined
}

export interface Log {
  /** Per guild, the numbers the gateway sent to at least one session, in order. */
  readonly produced: ReadonlyMap<string, ReadonlyArray<number>>
  /** Events no live session held the guild for (Discord would not send them either). */
  readonly unrouted: number
  /** Events sent (to at least one session). */
  readonly sent: number
  /** Copies sent: an event sent to two sessions counts twice. */
  readonly copies: number
}

export interface GuildTraffic {
  /** Finishes the current event (never half-sent) and stops; the final log. */
  readonly stop: Effect.Effect<Log>
  /** The log so far. */
  readonly log: () => Log
  /** Waits until `rounds` rounds were sent (only with `rounds`). */
  readonly done: Effect.Effect<Log>
}

export const start = (
  gateway: FakeGatewayService,
  options: Options,
): Effect.Effect<GuildTraffic, never, Scope.Scope> =>
  Effect.gen(function* () {
    const produced = new Map<string, Array<number>>(options.guilds.map((g) => [g, []]))
    const next = new Map<string, number>(options.guilds.map((g) => [g, 0]))
    let unrouted = 0
    let sent = 0
    let copies = 0
    let stopping = false
    const log = (): Log => ({ produced, unrouted, sent, copies })
    const pause =
      options.roundsPerSecond === undefined ? undefined : Duration.millis(1000 / options.roundsPerSecond)

    const one = (guildId: string) =>
      Effect.suspend(() => {
        const n = next.get(guildId)!
        next.set(guildId, n + 1)
        return gateway.dispatchToGuild(guildId, "MESSAGE_CREATE", Traffic.guildMessage(guildId, n)).pipe(
          Effect.match({
            onFailure: () => {
              unrouted++
            },
            onSuccess: (seqs) => {
              produced.get(guildId)!.push(n)
              sent++
              copies += seqs.length
            },
          }),
        )
      })

    const finished = yield* Deferred.make<Log>()
    const fiber = yield* Effect.forkScoped(
      Effect.gen(function* () {
        for (let round = 0; options.rounds === undefined || round < options.rounds; round++) {
          for (const guildId of options.guilds) {
            if (stopping) return
            yield* one(guildId)
          }
          if (pause !== undefined) yield* Effect.sleep(pause)
          else yield* Effect.yieldNow
        }
      }).pipe(Effect.ensuring(Effect.suspend(() => Deferred.succeed(finished, log())))),
    )
    return {
      stop: Effect.suspend(() => {
        stopping = true
        return Effect.andThen(Fiber.await(fiber), Effect.sync(log))
      }),
      log,
      done: Deferred.await(finished),
    }
  })
