/**
 * Transport compression for Node: `zlib-stream` and `zstd-stream` decompressors, both
 * synchronous (no async round trip per event) and chosen by measurement (see
 * packages/bench/README.md and `node packages/bench/src/codecs.ts`).
 *
 * Each `make` is a fresh context owned by one connection; a `DecodeError` spends only that
 * context, never another connection's.
 */
import { fromPush, GatewayCompression, type GatewayCompressionService } from "@vigil/gateway/Compression"
import { Effect, Layer } from "effect"
import { makeZlibDecompressor } from "./ZlibDecompressor.ts"
import { makeZstdDecompressor } from "./ZstdDecompressor.ts"

export const make: GatewayCompressionService["make"] = (kind, options) =>
  // Pure JS state: nothing to release beyond what the collector takes with the connection.
  Effect.sync(() =>
    fromPush((kind === "zlib-stream" ? makeZlibDecompressor(options) : makeZstdDecompressor(options)).push),
  )

export const service: GatewayCompressionService = { make }

/** Provides `GatewayCompression` with the Node codecs. */
export const layer: Layer.Layer<never> = Layer.succeed(GatewayCompression)(service)
