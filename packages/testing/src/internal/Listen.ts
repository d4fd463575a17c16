/**
 * Listening on 127.0.0.1, for the fakes that serve HTTP (`FakeGateway`, `FakeRest`): one
 * error class for both, so `catchTag("ListenError")` sees one shape whichever failed.
 */
import type * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Schema } from "effect"

/** A fake could not listen on 127.0.0.1 (at start, or on the same port after a restart). */
export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  server: Schema.String,
  /** The port asked for; 0 for any free one. */
  port: Schema.Number,
  detail: Schema.String,
}) {
  override get message() {
    return `${this.server} cannot listen on 127.0.0.1:${this.port}: ${this.detail}`
  }
}

/** Listens on `port` (0: any free one) and answers the port it got. */
export const listen = (server: Http.Server, name: string, port: number): Effect.Effect<number, ListenError> =>
  Effect.callback<number, ListenError>((resume) => {
    const onError = (error: Error) =>
      resume(Effect.fail(new ListenError({ server: name, port, detail: error.message })))
    server.once("error", onError)
    server.listen(port, "127.0.0.1", () => {
      server.off("error", onError)
      resume(Effect.succeed((server.address() as AddressInfo).port))
    })
  })
