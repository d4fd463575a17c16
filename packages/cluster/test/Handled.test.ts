/**
 * The saved sequence never passes what the app has finished: while the app handles event n, a
 * save of a sequence the shard has already buffered far beyond writes n - 1; a new session's
 * row is written only once the app has reached its READY; the app's catching up is written
 * without waiting for the shard's next save, and a graceful leave's `flush` writes the last.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Protocol } from "@vigil/gateway"
import { SessionStore } from "@vigil/gateway"
import { Effect, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Handled from "../src/internal/Handled.ts"

const key: SessionStore.ShardKey = [0, 1]
const event = (seq: number, type = "MESSAGE_CREATE", data: unknown = {}) =>
  ({ seq, type, data }) as unknown as Protocol.Dispatch
const ready = (seq: number, sessionId: string) => event(seq, "READY", { session_id: sessionId })

describe("Handled", () => {
  it.effect("a save while the app handles event n writes n - 1, whatever the shard buffered", () =>
    Effect.gen(function* () {
      const memory = SessionStore.makeMemory()
      const handled = yield* Handled.make("1 second")
      const store = handled.store(memory)
      yield* memory.save(key, { sessionId: "s1", sequence: 10, resumeUrl: "wss://r" })
      yield* store.load(key) // resumed: the app starts after 10
      const written: Array<number | null> = []
      yield* Stream.fromIterable([11, 12, 13].map((seq) => event(seq))).pipe(
        handled.track,
        Stream.runForEach((e) =>
          Effect.gen(function* () {
            // The shard has buffered up to 13 already.
            yield* store.save(key, { sessionId: "s1", sequence: 13, resumeUrl: "wss://r" })
            written.push(Option.getOrThrow(yield* memory.load(key)).sequence)
            assert.strictEqual(written.at(-1), e.seq - 1)
          }),
        ),
      )
      assert.deepStrictEqual(written, [10, 11, 12])
      // The stream ended: the app asked past 13, so it is done with it.
      yield* handled.flush
      assert.strictEqual(Option.getOrThrow(yield* memory.load(key)).sequence, 13)
    }),
  )

  it.effect("a new session is written only once the app has reached its READY", () =>
    Effect.gen(function* () {
      const memory = SessionStore.makeMemory()
      const handled = yield* Handled.make("1 second")
      const store = handled.store(memory)
      yield* memory.save(key, { sessionId: "old", sequence: 5, resumeUrl: "wss://old" })
      yield* store.load(key)
      const rows: Array<string> = []
      const row = Effect.map(memory.load(key), (r) => {
        const { sessionId, sequence } = Option.getOrThrow(r)
        return `${sessionId}:${sequence}`
      })
      yield* Stream.fromIterable([event(6), ready(1, "new"), event(2)]).pipe(
        handled.track,
        Stream.runForEach((e) =>
          Effect.gen(function* () {
            if (e.seq === 6) {
              // The shard has READY of a new session (and event 2) in its buffer already.
              yield* store.save(key, { sessionId: "new", sequence: 2, resumeUrl: "wss://new" })
            }
            rows.push(yield* row)
          }),
        ),
      )
      // While the app was on 6 the old row stayed; on READY, still nothing of the new session is
      // finished; on 2, READY (1) is.
      assert.deepStrictEqual(rows.slice(0, 1), ["old:5"])
      yield* TestClock.adjust("1 second")
      yield* handled.flush
      assert.strictEqual(yield* row, "new:2")
    }),
  )

  it.effect("what the app finishes after a held-back save is written without a new save", () =>
    Effect.gen(function* () {
      const memory = SessionStore.makeMemory()
      const handled = yield* Handled.make("100 millis")
      const store = handled.store(memory)
      yield* memory.save(key, { sessionId: "s1", sequence: 0, resumeUrl: "wss://r" })
      yield* store.load(key)
      yield* Stream.fromIterable([1, 2, 3].map((seq) => event(seq))).pipe(
        handled.track,
        Stream.runForEach((e) =>
          e.seq === 1 ? store.save(key, { sessionId: "s1", sequence: 3, resumeUrl: "wss://r" }) : Effect.void,
        ),
      )
      assert.isBelow(Option.getOrThrow(yield* memory.load(key)).sequence!, 3)
      // The catch-up writer, woken by the app's pulls, at most once per interval.
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(Option.getOrThrow(yield* memory.load(key)).sequence, 3)
    }),
  )
})
