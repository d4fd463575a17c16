/**
 * Is a previous owner's process provably gone? A TCP connect to its runner address (the
 * `owner` of its row, `host:port`): refused means nothing listens there any more — the process
 * ended, and its kernel closed its sockets, the gateway's included. Anything else (accepted,
 * silent, unreachable, not an address) proves nothing: a frozen process's kernel still accepts,
 * a partitioned or powered-off machine does not answer.
 */
import * as Net from "node:net"
import { type Duration, Effect, Option } from "effect"

export type Verdict = "gone" | "maybe-alive"

const parse = (owner: string): { readonly host: string; readonly port: number } | undefined => {
  const colon = owner.lastIndexOf(":")
  const port = Number(owner.slice(colon + 1))
  const host = owner.slice(0, colon).replace(/^\[(.*)\]$/, "$1")
  return colon > 0 && Number.isInteger(port) && port > 0 && port < 65_536 ? { host, port } : undefined
}

export const probe = (owner: string, timeout: Duration.Input): Effect.Effect<Verdict> => {
  const address = parse(owner)
  if (address === undefined) return Effect.succeed("maybe-alive")
  return Effect.callback<Verdict>((resume) => {
    const socket = Net.connect(address)
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("maybe-alive"))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => {
      socket.destroy()
      resume(Effect.succeed(error.code === "ECONNREFUSED" ? "gone" : "maybe-alive"))
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.timeoutOption(timeout), Effect.map(Option.getOrElse((): Verdict => "maybe-alive")))
}
