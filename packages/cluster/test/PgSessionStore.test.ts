/**
 * Sessions on PostgreSQL: what one runner saves another loads; a late writer (a runner that has
 * lost the shard) never rolls a session's sequence back; a row that is not a session is a
 * logged miss.
 */
import { assert, describe, it } from "@effect/vitest"
import { PgSessionStore } from "@vigil/cluster"
import { SessionStore } from "@vigil/gateway"
import { Effect, Layer, Logger, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as TestDatabase from "./TestDatabase.ts"

const session = { sessionId: "s1", sequence: 42, resumeUrl: "wss://resume.example" }

/** A store on a pool of its own, as another runner's would be. */
const runner = <A, E, R>(use: (store: SessionStore.SessionStoreService) => Effect.Effect<A, E, R>) =>
  SessionStore.SessionStore.use(use).pipe(
    Effect.provide(PgSessionStore.layer.pipe(Layer.provide(TestDatabase.client()))),
  )

describe("PgSessionStore", () => {
  it.live("what one runner saves, another loads; keyed by shard id and shard count", () =>
    Effect.gen(function* () {
      yield* runner((store) =>
        Effect.andThen(store.save([3, 16], session), store.save([3, 8], { ...session, sessionId: "s2" })),
      )
      const loaded = yield* runner((store) =>
        Effect.all([store.load([3, 16]), store.load([3, 8]), store.load([4, 16])]),
      )
      assert.deepStrictEqual(loaded, [
        Option.some(session),
        Option.some({ ...session, sessionId: "s2" }),
        Option.none(),
      ])
      yield* runner((store) => store.clear([3, 16]))
      assert.isTrue(Option.isNone(yield* runner((store) => store.load([3, 16]))))
      assert.isTrue(Option.isSome(yield* runner((store) => store.load([3, 8]))))
    }).pipe(Effect.provide(TestDatabase.fresh)),
  )

  it.live("a late save of the same session never moves its sequence back; a new session replaces it", () =>
    Effect.gen(function* () {
      yield* runner((store) => store.save([0, 1], { ...session, sequence: 100 }))
      // The fenced runner wakes up and writes what it had.
      yield* runner((store) =>
        Effect.andThen(
          store.save([0, 1], { ...session, sequence: 90 }),
          store.save([0, 1], { ...session, sequence: null }),
        ),
      )
      assert.deepStrictEqual(
        yield* runner((store) => store.load([0, 1])),
        Option.some({ ...session, sequence: 100 }),
      )
      yield* runner((store) => store.save([0, 1], { ...session, sequence: 101 }))
      assert.deepStrictEqual(
        yield* runner((store) => store.load([0, 1])),
        Option.some({ ...session, sequence: 101 }),
      )
      const fresh = { sessionId: "s2", sequence: 1, resumeUrl: "wss://other.example" }
      yield* runner((store) => store.save([0, 1], fresh))
      assert.deepStrictEqual(yield* runner((store) => store.load([0, 1])), Option.some(fresh))
    }).pipe(Effect.provide(TestDatabase.fresh)),
  )

  it.live("racing writers of one session leave the highest sequence", () =>
    Effect.gen(function* () {
      const writer = (sequences: ReadonlyArray<number>) =>
        runner((store) =>
          Effect.forEach(sequences, (sequence) => store.save([0, 1], { ...session, sequence }), {
            discard: true,
          }),
        )
      const evens = Array.from({ length: 50 }, (_, i) => 200 - 2 * i)
      const odds = Array.from({ length: 50 }, (_, i) => 1 + 2 * i)
      yield* Effect.all([writer(evens), writer(odds)], { concurrency: "unbounded" })
      assert.deepStrictEqual(
        yield* runner((store) => store.load([0, 1])),
        Option.some({ ...session, sequence: 200 }),
      )
    }).pipe(Effect.provide(TestDatabase.fresh)),
  )

  it.live("a row that is not a session is a miss, logged", () =>
    Effect.gen(function* () {
      yield* runner(() => Effect.void) // creates the table
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO vigil_sessions (shard_id, shard_count, session_id, sequence, resume_url)
                 VALUES (0, 1, 's1', -5, 'wss://resume.example'), (1, 1, 's1', 7, 'not a url')`
      const logs: Array<string> = []
      const capture = Logger.make(({ message }) => void logs.push(String(message)))
      const loaded = yield* runner((store) => Effect.all([store.load([0, 1]), store.load([1, 1])])).pipe(
        Effect.provide(Logger.layer([capture])),
      )
      assert.deepStrictEqual(loaded, [Option.none(), Option.none()])
      assert.strictEqual(logs.filter((line) => line.includes("not a session")).length, 2)
    }).pipe(Effect.provide(TestDatabase.layer)),
  )
})
