/**
 * Each event's key, `(shardId, sessionId, seq)`: the resumed session's id until a READY starts
 * a new one; and the check an app makes against the last key it handled, which drops what a
 * resume after a crash hands over again.
 */
import { assert, describe, it } from "@effect/vitest"
import { EventKey } from "@vigil/cluster"
import { Protocol, type Shard } from "@vigil/gateway"
import { Effect, Stream } from "effect"
import { type AppStore, run } from "./readme/exactlyOnce.ts"

const message = (seq: number) => Protocol.makeDispatch(seq, "MESSAGE_CREATE", { id: String(seq) })
const ready = (seq: number, session: string) =>
  Protocol.makeDispatch(seq, "READY", { session_id: session, resume_gateway_url: "wss://x" })

describe("EventKey", () => {
  it.effect("events carry the resumed session's id until a READY starts a new session", () =>
    Effect.gen(function* () {
      const events = Stream.fromIterable([message(41), message(42), ready(0, "s2"), message(1), message(2)])
      const keys = yield* Stream.runCollect(EventKey.keyed(events, 3, "s1"))
      assert.deepStrictEqual(
        keys.map((k) => `${k.shardId}/${k.sessionId}/${k.seq}`),
        ["3/s1/41", "3/s1/42", "3/s2/0", "3/s2/1", "3/s2/2"],
      )
    }),
  )

  it.effect("a shard that identifies starts with its READY's session", () =>
    Effect.gen(function* () {
      const keys = yield* Stream.runCollect(
        EventKey.keyed(Stream.fromIterable([ready(1, "s9"), message(2)]), 0, undefined),
      )
      assert.deepStrictEqual(
        keys.map((k) => k.sessionId),
        ["s9", "s9"],
      )
    }),
  )

  it.effect(
    "the README's app, which remembers its last key, drops what a crash's resume hands over again",
    () =>
      Effect.gen(function* () {
        let last: EventKey.KeyedEvent | undefined
        const handled: Array<string> = []
        const store: AppStore = {
          lastHandled: () => Effect.sync(() => last),
          handleAndRemember: (event) =>
            Effect.sync(() => {
              handled.push(`${event.sessionId}/${event.seq}`)
              last = event
            }),
        }
        const runner = (events: ReadonlyArray<Protocol.Dispatch>, resumes: string | undefined) =>
          run(store)({} as Shard.Shard, { events: EventKey.keyed(Stream.fromIterable(events), 0, resumes) })
        // Runner A handled 1..5 of session s1 and crashed; runner B resumes from the saved 3.
        yield* runner([ready(0, "s1"), message(1), message(2), message(3), message(4), message(5)], undefined)
        yield* runner([message(4), message(5), message(6), message(7)], "s1")
        yield* runner([ready(0, "s2"), message(1)], "s1") // a new session starts over
        assert.deepStrictEqual(handled, [
          "s1/0",
          "s1/1",
          "s1/2",
          "s1/3",
          "s1/4",
          "s1/5",
          "s1/6",
          "s1/7",
          "s2/0",
          "s2/1",
        ])
      }),
  )
})
