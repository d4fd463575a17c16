/**
 * Everything a Node process needs to run Vigil's gateway, in one layer: the ws transport,
 * the zlib-stream / zstd-stream codecs, and an in-memory session store. Provide
 * `NodeSessionStore.layerFileSystem(directory)` in front of it to resume across restarts.
 */
import { SessionStore, type Transport } from "@vigil/gateway"
import { Layer } from "effect"
import * as NodeCompression from "./NodeCompression.ts"
import * as NodeTransport from "./NodeTransport.ts"

export const layer = (
  options?: NodeTransport.NodeTransportOptions,
): Layer.Layer<Transport.GatewayTransport | SessionStore.SessionStore> =>
  Layer.mergeAll(NodeTransport.layer(options), NodeCompression.layer, SessionStore.SessionStore.layerMemory)
