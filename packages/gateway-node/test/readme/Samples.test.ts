/**
 * The README's gateway samples ("One connection", "Running shards"), run as a user runs them:
 * `node connection.ts` / `node shards.ts` against FakeGateway on 127.0.0.1. `scripts/readme.ts`
 * keeps the README's code blocks byte-identical to these files.
 */
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as NodeProgram from "@vigil/testing/NodeProgram"
import { Effect } from "effect"

/** The samples run the workspace's sources, not the built packages. */
const sources = { conditions: ["@vigil/source"] }

const sample = (name: string) => fileURLToPath(new URL(name, import.meta.url))
const token = "readme-sample-token-SECRET"

describe("README samples: the gateway", () => {
  it.live("one connection: a zombie link ends it with ZombieDetected, caught by its tag", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000, shards: 1 })
      const program = yield* NodeProgram.start(
        sample("connection.ts"),
        {
          DISCORD_TOKEN: token,
          DISCORD_GATEWAY_URL: gateway.url,
        },
        sources,
      )
      yield* gateway.awaitEntry((e) => e._tag === "Sent" && e.t === "READY")
      yield* eventually(() => program.stdout().includes("1 events"), "READY logged", "20 seconds")
      yield* gateway.stopAcks("all")
      const exited = yield* program.exited.pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(exited.code, 0, exited.stderr)
      assert.include(exited.stdout, "dead link")
      assert.notInclude(exited.stdout + exited.stderr, token)
    }),
  )

  it.live("running shards: events arrive tagged with their shard; a refused token ends in its catchTag", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000, shards: 2 })
      const program = yield* NodeProgram.start(
        sample("shards.ts"),
        {
          DISCORD_TOKEN: token,
          DISCORD_API_URL: gateway.httpUrl,
        },
        sources,
      )
      yield* eventually(
        () => program.stdout().includes("shard 0: READY") && program.stdout().includes("shard 1: READY"),
        "both shards READY",
        "20 seconds",
      )
      yield* gateway.dispatch("all", "MESSAGE_CREATE", { id: "1", channel_id: "42", content: "hi" })
      yield* eventually(
        () =>
          program.stdout().includes("shard 0: MESSAGE_CREATE") &&
          program.stdout().includes("shard 1: MESSAGE_CREATE"),
        "the message on both shards",
        "20 seconds",
      )
      yield* gateway.close("all", 4004) // authentication failed: fatal, never retried
      const exited = yield* program.exited.pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(exited.code, 0, exited.stderr)
      assert.include(exited.stdout + exited.stderr, "the token was refused")
      assert.notInclude(exited.stdout + exited.stderr, token)
    }),
  )
})
