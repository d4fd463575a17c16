import type { SessionStore } from "@vigil/gateway"

/** A shard's singleton (and command entity) name: `vigil-shard-<id>-of-<count>`. */
export const nameOf = ([id, count]: SessionStore.ShardKey): string => `vigil-shard-${id}-of-${count}`

/** The shard a singleton name stands for. */
export const keyOf = (name: string): SessionStore.ShardKey => {
  const [, id, count] = /^vigil-shard-(\d+)-of-(\d+)$/.exec(name) ?? []
  return [Number(id), Number(count)]
}
