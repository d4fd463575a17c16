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

/**
 * Intents from text (a flag, an environment variable): a bitfield (`"513"`) or bit names
 * separated by commas (`"Guilds,GuildMessages"`). Undefined when a name is unknown.
 */
export const parse = (text: string): number | undefined => {
  const trimmed = text.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed)
  let bits = 0
  for (const name of trimmed.split(",")) {
    const bit: unknown = GatewayIntentBits[name.trim() as keyof typeof GatewayIntentBits]
    if (typeof bit !== "number") return undefined
    bits |= bit
  }
  return bits
}
