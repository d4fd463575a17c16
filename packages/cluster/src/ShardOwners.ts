/**
 * Who may run a shard right now. Before a shard starts on a runner, its singleton acquires an
 * `Ownership`: a new epoch (fencing token) for `[shard id, shard count]`, a lease the runner
 * keeps renewing, and the session store the shard must save through, which refuses what this
 * owner may no longer write. The shard stops the instant the ownership lapses (superseded by a
 * newer epoch, or its lease not renewed in time), before another runner may start it.
 *
 * `PgShardOwners` is the one for a cluster; `layerUnfenced` (one process, tests) never lapses.
 */
import { SessionStore } from "@vigil/gateway"
import { Context, Effect, Layer, type Scope } from "effect"
import type { Lapse } from "./internal/Lease.ts"

export type { Lapse } from "./internal/Lease.ts"

export interface Ownership {
  /** The fencing token: higher than every earlier owner's. */
  readonly epoch: number
  /** How long the acquisition waited for the previous owner's lease to run out, milliseconds. */
  readonly waitedMillis: number
  /** Saves carry the epoch; a save refused for a newer epoch lapses the ownership at once. */
  readonly store: SessionStore.SessionStoreService
  /** Synchronous: may this runner still deliver events and send commands for the shard? */
  readonly valid: () => boolean
  /** Waits until the ownership stops holding, and says why. */
  readonly lapsed: Effect.Effect<Lapse>
  /**
   * After a lapse, once the shard's socket is closed: records it (retrying while the database
   * fails), so that the next owner need not wait for the gateway to drop a socket it cannot see.
   */
  readonly closed: Effect.Effect<void>
  /** After an expired lease: true once it is renewed again (same epoch), false if superseded. */
  readonly recovered: Effect.Effect<boolean>
}

export interface ShardOwnersService {
  /** Takes the shard for this runner; the scope's end gives it up (the next owner need not wait). */
  readonly acquire: (shard: SessionStore.ShardKey) => Effect.Effect<Ownership, never, Scope.Scope>
}

export class ShardOwners extends Context.Service<ShardOwners, ShardOwnersService>()(
  "@vigil/cluster/ShardOwners",
) {
  /** No fencing: the `SessionStore` in context, epoch 0, never lapses. For one process. */
  static readonly layerUnfenced: Layer.Layer<ShardOwners, never, SessionStore.SessionStore> = Layer.effect(
    ShardOwners,
  )(
    Effect.gen(function* () {
      const store = yield* SessionStore.SessionStore
      return {
        acquire: () =>
          Effect.succeed({
            epoch: 0,
            waitedMillis: 0,
            store,
            valid: () => true,
            lapsed: Effect.never,
            closed: Effect.void,
            recovered: Effect.succeed(true),
          }),
      }
    }),
  )
}
