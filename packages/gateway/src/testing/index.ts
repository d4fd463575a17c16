/**
 * The platform-free test kit (`@vigil/gateway/testing`): an in-memory transport and a scripted
 * server for `TestClock`-exact tests. It lives beside the core, as `effect/testing` does, so the
 * core's own tests need no other package; `@vigil/testing` re-exports it with the Node parts.
 */
export * as MemoryTransport from "./MemoryTransport.ts"
export * as Payloads from "./Payloads.ts"
export * as ScriptedGateway from "./ScriptedGateway.ts"
export * as Settle from "./Settle.ts"
