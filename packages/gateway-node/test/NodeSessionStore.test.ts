/**
 * Sessions on the real file system: what one store instance writes, a fresh one (a restarted
 * process) reads; a damaged file is a miss; a directory that cannot exist is a typed failure.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { KeyValueSessionStore, SessionStore } from "@vigil/gateway"
import { NodeSessionStore } from "@vigil/gateway-node"
import { Effect, Exit, Layer, Option } from "effect"

const session = { sessionId: "s1", sequence: 42, resumeUrl: "wss://resume.example" }

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "vigil-sessions-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
)

/** A store built afresh from the directory, as a new process would. */
const withStore = <A>(
  directory: string,
  use: (store: SessionStore.SessionStoreService) => Effect.Effect<A>,
) =>
  Effect.gen(function* () {
    return yield* use(yield* SessionStore.SessionStore)
  }).pipe(Effect.provide(NodeSessionStore.layerFileSystem(directory)))

describe("NodeSessionStore.layerFileSystem", () => {
  it.effect("what one process saves, the next loads; a file per shard id and shard count", () =>
    Effect.gen(function* () {
      const root = yield* tempDir
      const directory = path.join(root, "not", "yet", "there")
      yield* withStore(directory, (store) =>
        Effect.andThen(store.save([0, 2], session), store.save([0, 4], { ...session, sessionId: "s2" })),
      )
      assert.deepStrictEqual(fs.readdirSync(directory).sort(), ["vigil-shard-0-of-2", "vigil-shard-0-of-4"])
      const loaded = yield* withStore(directory, (store) =>
        Effect.all([store.load([0, 2]), store.load([1, 2])]),
      )
      assert.deepStrictEqual(loaded, [Option.some(session), Option.none()])
      yield* withStore(directory, (store) => store.clear([0, 2]))
      assert.deepStrictEqual(fs.readdirSync(directory), ["vigil-shard-0-of-4"])
    }),
  )

  it.effect("a truncated file (a write cut short) is a miss, not a crash", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      fs.writeFileSync(path.join(directory, KeyValueSessionStore.keyOf([0, 1])), '{"sessionId":"s1","sequ')
      const loaded = yield* withStore(directory, (store) => store.load([0, 1]))
      assert.isTrue(Option.isNone(loaded))
    }),
  )

  it.effect("a write that fails half-way leaves the previous session whole", () =>
    Effect.gen(function* () {
      const directory = yield* tempDir
      yield* withStore(directory, (store) => store.save([0, 1], session))
      // Writes go through `<file>.tmp`: a directory in its way makes the next write fail there,
      // as a process killed mid-write would, before the session file is touched.
      fs.mkdirSync(path.join(directory, `${KeyValueSessionStore.keyOf([0, 1])}.tmp`))
      yield* withStore(directory, (store) => store.save([0, 1], { ...session, sequence: 43 }))
      const loaded = yield* withStore(directory, (store) => store.load([0, 1]))
      assert.deepStrictEqual(loaded, Option.some(session))
    }),
  )

  it.effect("a directory that cannot be created fails the layer, typed", () =>
    Effect.gen(function* () {
      const root = yield* tempDir
      const file = path.join(root, "a-file")
      fs.writeFileSync(file, "")
      const exit = yield* Effect.exit(
        Layer.build(NodeSessionStore.layerFileSystem(path.join(file, "sessions"))),
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit)) : undefined
      assert.strictEqual(error?._tag, "PlatformError")
    }),
  )
})
