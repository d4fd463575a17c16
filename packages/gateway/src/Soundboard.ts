/**
 * Request Soundboard Sounds (op 31): Discord answers with one SOUNDBOARD_SOUNDS dispatch per
 * guild, carrying no nonce. The registry waits until every guild asked for has answered and
 * hands back their sounds; a guild that never answers ends the wait with a typed timeout.
 */
import type { GatewaySoundboardSoundsDispatchData } from "discord-api-types/v10"
import { Deferred, Duration, Effect, Schema } from "effect"
import type { PayloadTooLarge, ShardStopped } from "./GatewayError.ts"
import * as Protocol from "./Protocol.ts"

export interface RequestSoundboardSounds {
  readonly guildIds: ReadonlyArray<string>
  /** How long to wait for every guild's answer. Default 30 s. */
  readonly timeout?: Duration.Input | undefined
}

/** One answer per guild asked for, in the order they came. */
export type SoundboardSoundsResult = ReadonlyArray<GatewaySoundboardSoundsDispatchData>

export class SoundboardSoundsTimeout extends Schema.TaggedError<SoundboardSoundsTimeout>()(
  "SoundboardSoundsTimeout",
  { missing: Schema.Array(Schema.String) },
) {
  override get message() {
    return `no soundboard sounds in time for guild(s) ${this.missing.join(", ")}`
  }
}

interface Pending {
  readonly missing: Set<string>
  readonly answers: Array<GatewaySoundboardSoundsDispatchData>
  readonly done: Deferred.Deferred<void, ShardStopped>
}

export const makeRegistry = () => {
  /** Requests waiting, by the guild they wait for. */
  const waiting = new Map<string, Set<Pending>>()

  /** Looks at every delivered dispatch; only SOUNDBOARD_SOUNDS concerns it (typed, not validated). */
  const observe = (dispatch: Protocol.Dispatch): void => {
    if (dispatch.type !== "SOUNDBOARD_SOUNDS") return
    const guildId = String(dispatch.data?.guild_id)
    const requests = waiting.get(guildId)
    if (!requests) return
    waiting.delete(guildId)
    for (const entry of requests) {
      entry.answers.push(dispatch.data)
      entry.missing.delete(guildId)
      if (entry.missing.size === 0) Deferred.doneUnsafe(entry.done, Effect.void)
    }
  }

  /** The shard stopped for good: requests still waiting fail with `error`. */
  const close = (error: ShardStopped) =>
    Effect.sync(() => {
      for (const requests of waiting.values()) {
        for (const entry of requests) Deferred.doneUnsafe(entry.done, Effect.fail(error))
      }
    })

  const forget = (entry: Pending) =>
    Effect.sync(() => {
      for (const guildId of entry.missing) {
        const requests = waiting.get(guildId)
        requests?.delete(entry)
        if (requests?.size === 0) waiting.delete(guildId)
      }
    })

  const request = (
    req: RequestSoundboardSounds,
    send: (op: number, d: unknown) => Effect.Effect<void, PayloadTooLarge | ShardStopped>,
  ): Effect.Effect<SoundboardSoundsResult, SoundboardSoundsTimeout | PayloadTooLarge | ShardStopped> =>
    Effect.suspend(() => {
      const guildIds = [...new Set(req.guildIds)]
      if (guildIds.length === 0) return Effect.succeed([])
      const entry: Pending = { missing: new Set(guildIds), answers: [], done: Deferred.makeUnsafe() }
      for (const guildId of guildIds) {
        const requests = waiting.get(guildId) ?? new Set()
        requests.add(entry)
        waiting.set(guildId, requests)
      }
      return send(Protocol.Op.RequestSoundboardSounds, { guild_ids: guildIds }).pipe(
        Effect.andThen(Deferred.await(entry.done)),
        Effect.timeoutOrElse({
          duration: req.timeout ?? Duration.seconds(30),
          orElse: () => Effect.fail(new SoundboardSoundsTimeout({ missing: [...entry.missing] })),
        }),
        Effect.as(entry.answers),
        Effect.ensuring(forget(entry)),
      )
    })

  return { observe, request, close }
}
