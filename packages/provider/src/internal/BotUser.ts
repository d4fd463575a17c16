/**
 * Who the bot is, asked of the REST API (`GET /users/@me`) when no READY has said it. A
 * process that resumes its predecessor's sessions (a persistent session store) gets no
 * READY, yet needs the bot's id to skip its own messages and to report ready.
 */
import { GatewayError } from "@vigil/gateway"
import { Effect, Option, Schema } from "effect"
import * as Inbound from "../Inbound.ts"
import { BotUserUnavailable } from "../ProviderError.ts"
import type * as Rest from "../Rest.ts"

const route = "/users/@me"
const decode = Schema.decodeUnknownOption(Inbound.BotUser)

/** Through `rest` (its buckets, retries and typed errors); a refused token is the gateway's `AuthenticationFailed`. */
export const fetch = (
  rest: Rest.RestClient,
): Effect.Effect<Inbound.BotUser, GatewayError.AuthenticationFailed | BotUserUnavailable> =>
  rest.request({ method: "GET", route }).pipe(
    Effect.mapError((error): GatewayError.AuthenticationFailed | BotUserUnavailable =>
      error._tag === "Unauthorized"
        ? new GatewayError.AuthenticationFailed({ code: 401, reason: `GET ${route} refused the token` })
        : new BotUserUnavailable({ reason: error.message }),
    ),
    Effect.flatMap((answer) => {
      const user = decode(answer)
      return Option.isSome(user)
        ? Effect.succeed(user.value)
        : Effect.fail(
            new BotUserUnavailable({ reason: `GET ${route} answered without the user's id and name` }),
          )
    }),
  )
