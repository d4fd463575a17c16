export * as MemoryTransport from "./MemoryTransport.ts"
