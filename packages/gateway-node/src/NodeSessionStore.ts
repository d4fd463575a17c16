/**
 * Sessions that survive a restart, on Node: `KeyValueSessionStore` over Effect's file-system
 * `KeyValueStore`, one small JSON file per shard id and shard count in `directory` (created
 * if missing). Give each bot (token) its own directory.
 */
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { KeyValueSessionStore, type SessionStore } from "@vigil/gateway"
import { Effect, FileSystem, Layer, Path, type PlatformError } from "effect"
import { KeyValueStore } from "effect/persistence"

/** Fails (typed) only if `directory` cannot be created. */
export const layerFileSystem = (
  directory: string,
): Layer.Layer<SessionStore.SessionStore, PlatformError.PlatformError> =>
  KeyValueSessionStore.layer.pipe(
    Layer.provide(atomicWrites(directory)),
    Layer.provide(KeyValueStore.layerFileSystem(directory)),
    Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)),
  )

/**
 * Effect's file store writes a file in place: a process killed mid-write (the very crash a
 * persistent session is for) would leave it truncated, and the session lost. Each write goes
 * to a temporary file renamed over the old one instead, so a reader sees the old session or
 * the new one, whole. The path is the file store's own: `encodeURIComponent(key)` in
 * `directory`.
 */
const atomicWrites = (directory: string) =>
  Layer.effect(KeyValueStore.KeyValueStore)(
    Effect.gen(function* () {
      const files = yield* KeyValueStore.KeyValueStore
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      return KeyValueStore.make({
        ...files,
        set: (key, value) => {
          const file = path.join(directory, encodeURIComponent(key))
          const temporary = `${file}.tmp`
          return (
            typeof value === "string" ? fs.writeFileString(temporary, value) : fs.writeFile(temporary, value)
          ).pipe(
            Effect.andThen(fs.rename(temporary, file)),
            Effect.mapError(
              (cause) =>
                new KeyValueStore.KeyValueStoreError({
                  method: "set",
                  key,
                  message: `Unable to set item with key ${key}: ${cause.message}`,
                  cause,
                }),
            ),
          )
        },
      })
    }),
  )
