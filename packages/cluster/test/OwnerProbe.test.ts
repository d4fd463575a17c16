/**
 * The probe of a previous owner's runner address, on real sockets (127.0.0.1): a refused
 * connection is the only proof that its process is gone; a listening socket, a silent address
 * or something that is not an address proves nothing.
 */
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as OwnerProbe from "../src/internal/OwnerProbe.ts"

/** A listening server on a free port, closed with the test's scope. */
const listening = Effect.acquireRelease(
  Effect.callback<Net.Server>((resume) => {
    const server = Net.createServer((socket) => socket.destroy())
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void))),
)
const portOf = (server: Net.Server) => (server.address() as Net.AddressInfo).port

describe("OwnerProbe", () => {
  it.live("a listening runner address may be alive; once closed, it is gone", () =>
    Effect.gen(function* () {
      const server = yield* listening
      const address = `127.0.0.1:${portOf(server)}`
      assert.strictEqual(yield* OwnerProbe.probe(address, "2 seconds"), "maybe-alive")
      yield* Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
      assert.strictEqual(yield* OwnerProbe.probe(address, "2 seconds"), "gone")
    }).pipe(Effect.scoped),
  )

  it.live("a frozen process's port still accepts; a name that is not an address proves nothing", () =>
    Effect.gen(function* () {
      // A server that never accepts in code still completes handshakes in the kernel's backlog.
      const server = yield* listening
      server.removeAllListeners("connection")
      assert.strictEqual(yield* OwnerProbe.probe(`127.0.0.1:${portOf(server)}`, "2 seconds"), "maybe-alive")
      assert.strictEqual(yield* OwnerProbe.probe("runner", "2 seconds"), "maybe-alive")
      assert.strictEqual(yield* OwnerProbe.probe("127.0.0.1:99999", "2 seconds"), "maybe-alive")
    }).pipe(Effect.scoped),
  )
})
