/**
 * Sessions that survive a restart, on Node: `KeyValueSessionStore` over Effect's file-system
 * `KeyValueStore`, one small JSON file per shard id and shard count in `directory` (created
 * if missing). Give each bot (token) its own directory.
 */
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { KeyValueSessionStore, type SessionStore } from "@vigil/gateway"
import { Layer, type PlatformError } from "effect"
import { KeyValueStore } from "effect/persistence"

/** Fails (typed) only if `directory` cannot be created. */
export const layerFileSystem = (
  directory: string,
): Layer.Layer<SessionStore.SessionStore, PlatformError.PlatformError> =>
  KeyValueSessionStore.layer.pipe(
    Layer.provide(KeyValueStore.layerFileSystem(directory)),
    Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)),
  )
