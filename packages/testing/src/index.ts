export * as MemoryTransport from "./MemoryTransport.ts"
export * as Payloads from "./Payloads.ts"
export * as ScriptedGateway from "./ScriptedGateway.ts"
export * as Settle from "./Settle.ts"
