export * as ClusterError from "./ClusterError.ts"
export * as PgDatabase from "./PgDatabase.ts"
export * as PgIdentifyThrottle from "./PgIdentifyThrottle.ts"
export * as PgSessionStore from "./PgSessionStore.ts"
