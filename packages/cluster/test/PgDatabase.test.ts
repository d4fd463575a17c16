/**
 * A database that cannot be used fails the layer at once, typed, with a message that names the
 * database but never the password; nothing hangs: a server that accepts and then says nothing
 * is given up after the connect timeout.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { PgDatabase } from "@vigil/cluster"
import { ConfigProvider, type Duration, Effect, Exit, Layer, Option, Redacted } from "effect"

const failureOf = (url: string, connectTimeout: Duration.Input = "5 seconds") =>
  Effect.gen(function* () {
    const started = Date.now()
    const exit = yield* Effect.exit(
      Layer.build(PgDatabase.layer({ url: Redacted.make(url), connectTimeout })),
    )
    assert.isTrue(Exit.isFailure(exit), "the layer must fail")
    const error = Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit)) : undefined
    return { error, millis: Date.now() - started }
  })

/** A TCP port nobody listens on. */
const closedPort = Effect.promise(
  () =>
    new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => resolve(port))
      })
    }),
)

/** A server that accepts connections and never answers (a black hole past the handshake). */
const silentServer = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ server: net.Server; sockets: Set<net.Socket>; port: number }>((resolve) => {
        const sockets = new Set<net.Socket>()
        const server = net.createServer((socket) => void sockets.add(socket))
        server.listen(0, "127.0.0.1", () =>
          resolve({ server, sockets, port: (server.address() as net.AddressInfo).port }),
        )
      }),
  ),
  ({ server, sockets }) =>
    Effect.promise(() => {
      for (const socket of sockets) socket.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    }),
)

const serverUrl = () => new URL(process.env["DATABASE_URL"] ?? "postgres://unset@127.0.0.1/unset")

describe("PgDatabase.layer", () => {
  it.live("a URL that is not postgres:// is a DatabaseConfigError that does not echo it", () =>
    Effect.gen(function* () {
      for (const url of ["not a url with s3cret", "mysql://u:s3cret@127.0.0.1/db"]) {
        const { error } = yield* failureOf(url)
        assert.strictEqual(error?._tag, "DatabaseConfigError")
        assert.notInclude(error?.message ?? "s3cret", "s3cret")
      }
    }),
  )

  it.live("a refused connection is DatabaseUnavailable at once, naming host and port only", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const { error, millis } = yield* failureOf(`postgres://vigil:s3cret@127.0.0.1:${port}/vigil`)
      assert.strictEqual(error?._tag, "DatabaseUnavailable")
      assert.include(error?.message ?? "", `127.0.0.1:${port}/vigil`)
      assert.notInclude(error?.message ?? "s3cret", "s3cret")
      assert.isBelow(millis, 3_000)
    }),
  )

  it.live("a server that never answers is given up after the connect timeout", () =>
    Effect.gen(function* () {
      const { port } = yield* silentServer
      const { error, millis } = yield* failureOf(
        `postgres://vigil:s3cret@127.0.0.1:${port}/vigil`,
        "500 millis",
      )
      assert.strictEqual(error?._tag, "DatabaseUnavailable")
      assert.isAtLeast(millis, 400)
      assert.isBelow(millis, 5_000)
    }),
  )

  it.live("a wrong password or a missing database is DatabaseUnavailable without the password", () =>
    Effect.gen(function* () {
      const wrongPassword = serverUrl()
      wrongPassword.password = "not-the-s3cret"
      const noDatabase = serverUrl()
      noDatabase.pathname = "/vigil_no_such_database"
      for (const url of [wrongPassword, noDatabase]) {
        const { error } = yield* failureOf(url.toString())
        assert.strictEqual(error?._tag, "DatabaseUnavailable")
        assert.notInclude(error?.message ?? "not-the-s3cret", "not-the-s3cret")
      }
    }),
  )

  it.live("layerConfig without DATABASE_URL is a DatabaseConfigError", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Layer.build(PgDatabase.layerConfig()).pipe(
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({}))),
        ),
      )
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit)) : undefined
      assert.strictEqual(error?._tag, "DatabaseConfigError")
    }),
  )
})
