/**
 * Transport compression for Node, each codec chosen by measurement (see
 * packages/bench/README.md and `node packages/bench/src/codecs.ts`):
 * - `zlib-stream`: synchronous (pako's inflate in our own loop), no async round trip at all;
 * - `zstd-stream`: `node:zlib`'s native zstd decoder, one asynchronous round trip per read
 *   batch (a JSON scanner recovers the messages), destroyed with the connection's scope.
 *
 * Each `make` is a fresh context owned by one connection; a `DecodeError` spends only that
 * context, never another connection's.
 */
import { GatewayCompression, type GatewayCompressionService } from "@vigil/gateway/Compression"
import { Effect, Layer } from "effect"
import { makeZlibDecompressor } from "./ZlibDecompressor.ts"
import * as ZstdStream from "./ZstdStream.ts"

export const make: GatewayCompressionService["make"] = (kind, options) =>
  kind === "zlib-stream"
    ? // Pure JS state: nothing to release beyond what the collector takes with the connection.
      Effect.sync(() => makeZlibDecompressor(options))
    : ZstdStream.make(options)

export const service: GatewayCompressionService = { make }

/** Provides `GatewayCompression` with the Node codecs. */
export const layer: Layer.Layer<never> = Layer.succeed(GatewayCompression)(service)
