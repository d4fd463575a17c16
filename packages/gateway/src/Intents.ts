/**
 * Gateway intents: which events a session receives. Discord wants one bitfield; Vigil takes
 * the bitfield or a list of `GatewayIntentBits` (discord-api-types' enum, re-exported here).
 */
import { GatewayIntentBits } from "discord-api-types/v10"

export { GatewayIntentBits }

/** A bitfield (`513`) or the bits themselves (`[GatewayIntentBits.Guilds, …]`). */
export type Intents = number | ReadonlyArray<GatewayIntentBits>

/** The bitfield Identify carries. */
export const bitfield = (intents: Intents): number =>
  typeof intents === "number" ? intents : intents.reduce((all, bit) => all | bit, 0)
