/**
 * The app as a user runs it: `vigil demo` end to end (its invariants are the test), and
 * `vigil connect` as a child process against a fake gateway on 127.0.0.1, where each fatal
 * error must print one line and exit with its own code, never showing the token.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { GatewayError, GatewayInfo } from "@vigil/gateway"
import type { Health } from "@vigil/provider"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as NodeProgram from "@vigil/testing/NodeProgram"
import { Effect, Fiber, Redacted } from "effect"
import * as Connect from "../src/Connect.ts"
import * as Demo from "../src/Demo.ts"
import { exitCodes, explain, MissingToken } from "../src/Explain.ts"
import * as Screen from "../src/Screen.ts"
import * as StatusView from "../src/StatusView.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** Starts `vigil …` with Node from its sources, stopped as `stop` says; killed when the scope closes. */
const launch = (args: ReadonlyArray<string>, env: Record<string, string>, stop?: NodeProgram.Stop) =>
  NodeProgram.start(main, env, { conditions: ["@vigil/source"], args, stop })

/** Runs `vigil …` to its end; stops it as `stop` says, and with SIGINT after 20 s in any case. */
const vigil = (args: ReadonlyArray<string>, env: Record<string, string>, stop?: NodeProgram.Stop) =>
  Effect.scoped(
    Effect.gen(function* () {
      const running = yield* launch(args, env, stop)
      return yield* running.exited.pipe(
        Effect.timeoutOrElse({
          duration: 20_000,
          orElse: () =>
            Effect.andThen(
              Effect.sync(() => running.kill("SIGINT")),
              running.exited,
            ),
        }),
      )
    }),
  )

const token = "cli-test-token-value"

describe("vigil demo", () => {
  it.live("storms the embedded gateway and proves nothing was lost or repeated", () =>
    Effect.gen(function* () {
      let text = ""
      const output: Screen.Output = {
        isTTY: false,
        write: (t) => {
          text += t
        },
      }
      const summary = yield* Demo.run({ shards: 2, heartbeatMillis: 500, burst: 500 }, output)
      assert.isTrue(summary.ok, text)
      assert.strictEqual(summary.lost, 0)
      assert.strictEqual(summary.duplicated, 0)
      assert.strictEqual(summary.delivered, summary.produced)
      assert.isAtLeast(summary.resumes, 4, "zombie, flap (2 shards), op 7, restart")
      assert.isAtLeast(summary.identifies, 3, "2 shards + the invalid session")
      assert.include(text, "ZombieDetected")
      assert.include(text, "every invariant held")
      // the last step, on by default: 2 → 4 under load, per guild exactly once and in order
      assert.isTrue(summary.reshard?.completed, text)
      assert.deepStrictEqual(
        [summary.reshard?.lost, summary.reshard?.duplicated, summary.reshard?.outOfOrder],
        [0, 0, 0],
      )
      assert.isAbove(summary.reshard?.sentTwice ?? 0, 0, "events went to both sessions during the handover")
      assert.include(text, "reshard 2 → 4")
      assert.notInclude(text, "\x1b[", "no escape codes when piped")
    }),
  )

  it("draws in place in a terminal, plainly in a pipe", () => {
    let tty = ""
    const screen = Screen.make({
      isTTY: true,
      write: (t) => {
        tty += t
      },
    })
    Effect.runSync(screen.status(["a", "b"]))
    Effect.runSync(screen.log("event"))
    assert.include(tty, "\x1b[2F", "moves up over the 2-line block to redraw it")
    Effect.runSync(screen.done)
    const before = tty.length
    Effect.runSync(screen.status(["x", "y"]))
    assert.strictEqual(tty.length, before, "after done, the block is never redrawn")
    let piped = ""
    const plain = Screen.make({
      isTTY: false,
      write: (t) => {
        piped += t
      },
    })
    Effect.runSync(plain.status(["a", "b"]))
    Effect.runSync(plain.status(["a", "b"]))
    Effect.runSync(plain.status(["a", "c"]))
    assert.strictEqual(piped, "  a\n  b\n  c\n", "only changes, no escape codes")
  })

  it("a shard's line names its state in words, and the last close with its reason and the URL tried", () => {
    const report: Health.ShardReport = {
      shardId: 0,
      shardCount: 2,
      state: { _tag: "WaitingForIdentify" },
      latencyMillis: 12,
      lastEventAt: undefined,
      sessionId: undefined,
      connections: 2,
      reconnects: 1,
      identifies: 0,
      resumes: 0,
      lastError: {
        tag: "ServerClosed",
        message: "server closed the connection with 4000: maintenance window",
        url: "wss://gateway.example",
      },
      errors: {},
      delivered: 0,
      duplicates: 0,
      dropped: 0,
      queuedCommands: 0,
    }
    const plain = Screen.style({ isTTY: false, write: () => {} })
    const line = StatusView.line(report, 0, plain, true)
    assert.include(line, "waiting for identify")
    assert.include(
      line,
      "last: server closed the connection with 4000: maintenance window (wss://gateway.example)",
    )
  })

  it("in a terminal narrower than its lines: each line fitted to the width, the redraw moves up by screen rows", () => {
    let tty = ""
    const screen = Screen.make({
      isTTY: true,
      columns: () => 20,
      write: (t) => {
        tty += t
      },
    })
    const s = Screen.style({ isTTY: true, write: () => {} })
    const long = `shard 0/2  ${s.green("ready")}  1234 ms  4567 events  3 conn · 2 resumed`
    Effect.runSync(screen.status([long, long, "short"]))
    Effect.runSync(screen.status([long, long, "short"]))
    const rows = tty.split("\n").filter((row) => row.length > 0)
    for (const row of rows) assert.isAtMost(Screen.visible(row).length, 19, JSON.stringify(row))
    assert.strictEqual(
      tty.match(/\[(\d+)F/)?.[1],
      "3",
      "up (ESC [ n F) by the three rows drawn, no more, no less",
    )
    assert.include(tty, "short\n", "a line that fits is left whole")
    assert.strictEqual(Screen.fit(`a${s.red("bcdef")}`, 4), `a\x1b[31mbc\x1b[0m`, "colours reset after a cut")
  })
})

describe("vigil connect", () => {
  it.live("--help describes the command; every flag an error explanation suggests exists", () =>
    Effect.gen(function* () {
      const ran = yield* vigil(["connect", "--help"], {})
      assert.strictEqual(ran.code, 0)
      assert.include(ran.stdout, "DISCORD_TOKEN")
      assert.include(ran.stdout, "--intents")
      assert.match(ran.stdout, /--api .*\/api\/vN.*default https:\/\/discord\.com\/api\/v10/)
      const fatal = { code: 4000, reason: "" }
      const explanations = [
        new MissingToken(),
        new GatewayError.AuthenticationFailed({ ...fatal, code: 4004 }),
        new GatewayInfo.GatewayInfoError({ url: "http://x/gateway/bot", detail: "d" }),
        new GatewayError.InvalidShard(fatal),
        new GatewayError.ShardingRequired(fatal),
        new GatewayError.InvalidApiVersion(fatal),
        new GatewayError.InvalidIntents(fatal),
        new GatewayError.DisallowedIntents(fatal),
        new GatewayError.CompressionUnavailable({ compression: "zstd-stream" }),
        new GatewayError.SessionStartLimitExhausted({ resetAfterMillis: 1 }),
      ].map((error) => explain(error).line)
      const suggested = new Set(explanations.flatMap((line) => line.match(/--[a-z-]+/g) ?? []))
      assert.isAtLeast(suggested.size, 3)
      for (const flag of suggested)
        assert.match(ran.stdout, new RegExp(`^\\s+${flag} `, "m"), `${flag} exists`)
      assert.notInclude(explanations.join(" "), "auto", "no `--shards auto`: it does not exist")
    }),
  )

  it.live("a malformed --api: said so, with the URL requested (not 'could not be reached'), exit 12", () =>
    Effect.gen(function* () {
      const ran = yield* vigil(["connect", "--api", "localhost:3000/api/v10"], { DISCORD_TOKEN: token })
      assert.strictEqual(ran.code, exitCodes.GatewayInfoError)
      assert.include(ran.stderr, "GET localhost:3000/api/v10/gateway/bot")
      assert.include(ran.stderr, "not an http(s) URL")
      assert.notInclude(ran.stderr, "could not be reached")
    }),
  )

  it.live("no token: one line, exit code 10", () =>
    Effect.gen(function* () {
      const ran = yield* vigil(["connect"], {})
      assert.strictEqual(ran.code, exitCodes.MissingToken)
      assert.match(ran.stderr.trim(), /^vigil: no token/)
    }),
  )

  it.live("a refused token: one line, its own exit code, the token never printed", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token })
      const ran = yield* vigil(["connect", "--api", gateway.httpUrl], { DISCORD_TOKEN: "wrong-secret-value" })
      assert.strictEqual(ran.code, exitCodes.AuthenticationFailed)
      assert.strictEqual(ran.stderr.trim().split("\n").length, 1)
      assert.include(ran.stderr, "refused the token (401)")
      assert.notInclude(ran.stdout + ran.stderr, "wrong-secret-value")
    }),
  )

  it.live("GET /users/@me failing (5xx after the retries): one line naming it, exit code 22", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token })
      yield* gateway.failPosts({ status: 503, count: 10 })
      const ran = yield* vigil(["connect", "--api", gateway.httpUrl], { DISCORD_TOKEN: token })
      assert.strictEqual(ran.code, exitCodes.BotUserUnavailable, ran.stderr)
      assert.strictEqual(ran.stderr.trim().split("\n").length, 1)
      assert.match(ran.stderr, /who the bot is: GET \/users\/@me failed \(503\)/)
    }),
  )

  it.live("a privileged intent the bot may not use: DisallowedIntents, exit code 17", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, allowedPrivilegedIntents: 0 })
      const ran = yield* vigil(["connect", "--api", gateway.httpUrl, "--intents", String(513 | (1 << 1))], {
        DISCORD_TOKEN: token,
      })
      assert.strictEqual(ran.code, exitCodes.DisallowedIntents)
      assert.include(ran.stderr, "privileged intent")
      assert.notInclude(ran.stdout + ran.stderr, token)
    }),
  )

  it.live("--intents takes GatewayIntentBits names: GuildMembers is privileged, so DisallowedIntents", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, allowedPrivilegedIntents: 0 })
      const ran = yield* vigil(["connect", "--api", gateway.httpUrl, "--intents", "Guilds,GuildMembers"], {
        DISCORD_TOKEN: token,
      })
      assert.strictEqual(ran.code, exitCodes.DisallowedIntents)
      const bogus = yield* vigil(["connect", "--api", gateway.httpUrl, "--intents", "Guilds,Bogus"], {
        DISCORD_TOKEN: token,
      })
      assert.notStrictEqual(bogus.code, 0)
      assert.include(bogus.stdout + bogus.stderr, "unknown intents: Guilds,Bogus")
    }),
  )

  it.live(
    "in a terminal, connect's live status block shows each shard's heartbeat latency and last close reason",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 250 })
        let text = ""
        const output: Screen.Output = {
          isTTY: true,
          columns: () => 200,
          write: (t) => {
            text += t
          },
        }
        const options = { intents: 513, shards: undefined, compression: "none", events: true } as const
        const fiber = yield* Effect.forkChild(
          Connect.run(
            { ...options, token: Redacted.make(token), apiBaseUrl: gateway.httpUrl, sessionDir: undefined },
            output,
          ),
        )
        const plain = () => Screen.visible(text)
        yield* eventually(
          () => /shard 0\/1 +ready +\d+ ms/.test(plain()),
          "a latency in the block",
          "15 seconds",
        )
        yield* Fiber.interrupt(fiber)
        assert.include(plain(), "READY", "events scroll above the block")
      }),
  )

  it.live("a healthy session prints events; Ctrl-C closes with a resumable code", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 500 })
      const fiber = yield* Effect.forkChild(
        vigil(
          ["connect", "--api", gateway.httpUrl],
          { DISCORD_TOKEN: token },
          {
            // READY too: the fake may number the messages before it (it records Identified first).
            when: (out) =>
              out.match(/MESSAGE_CREATE/g)?.length === 3 &&
              out.includes(" READY") &&
              out.includes("ready as "),
            signal: "SIGINT",
          },
        ),
      )
      yield* gateway.awaitEntry((e) => e._tag === "Sent" && e.t === "READY") // the events come after it
      yield* gateway.emit("latest", { count: 3 })
      const ran = yield* Fiber.join(fiber)
      assert.strictEqual(ran.code, 130, ran.stderr)
      assert.include(ran.stdout, "READY")
      assert.strictEqual(ran.stdout.match(/MESSAGE_CREATE/g)?.length, 3)
      assert.include(ran.stdout, "ready as vigil-fake-bot (1000000000000000001)")
      const closes = (yield* gateway.entries).filter((e) => e._tag === "Closed")
      assert.isTrue(closes.length > 0 && closes.every((c) => c._tag === "Closed" && c.code !== 1000))
      assert.notInclude(ran.stdout + ran.stderr, token)
    }),
  )

  it.live("SIGTERM (a supervisor's stop): a clean shutdown, exit 143 (128 + 15), not 130", () =>
    Effect.gen(function* () {
      const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 500 })
      const fiber = yield* Effect.forkChild(
        vigil(
          ["connect", "--api", gateway.httpUrl],
          { DISCORD_TOKEN: token },
          {
            when: (out) => out.includes("READY"),
            signal: "SIGTERM",
          },
        ),
      )
      const ran = yield* Fiber.join(fiber)
      assert.include(ran.stdout, "READY")
      assert.strictEqual(ran.code, 143, ran.stderr)
      // The server may record the close a moment after the process is gone.
      const closed = Effect.map(gateway.entries, (entries) => entries.filter((e) => e._tag === "Closed"))
      yield* eventually(
        Effect.map(closed, (closes) => closes.length > 0),
        "the server saw the socket closed",
      )
      const codes = (yield* closed).map((c) => (c._tag === "Closed" ? c.code : undefined))
      assert.isTrue(
        codes.every((code) => code !== 1000),
        `the session kept resumable: ${codes.join(",")}`,
      )
    }),
  )
})

describe("vigil connect --session-dir", () => {
  const tempDir = Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "vigil-cli-sessions-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
  )
  /** The sequences a `vigil connect` printed, in order. */
  const printed = (stdout: string) => [...stdout.matchAll(/#(\d+) [A-Z_]+/g)].map((m) => Number(m[1]))
  /** The sequence in the (only) stored session file; undefined while there is none. */
  const storedSequence = (dir: string): number | null | undefined => {
    const files = fs.readdirSync(dir).filter((f) => !f.endsWith(".tmp"))
    return files.length === 1
      ? JSON.parse(fs.readFileSync(path.join(dir, files[0]!), "utf8")).sequence
      : undefined
  }

  it.live("a directory that cannot be created: one line, exit code 20", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      fs.writeFileSync(path.join(dir, "a-file"), "")
      const ran = yield* vigil(["connect", "--session-dir", path.join(dir, "a-file", "sessions")], {
        DISCORD_TOKEN: token,
      })
      assert.strictEqual(ran.code, exitCodes.SessionDirUnavailable)
      assert.strictEqual(ran.stderr.trim().split("\n").length, 1)
      assert.match(ran.stderr.trim(), /^vigil: cannot keep sessions in .*a-file.*--session-dir/)
    }),
  )

  it.live(
    "a process killed with SIGKILL mid-stream is restarted and resumes: no identify, the unsaved window replayed, nothing skipped",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const dir = yield* tempDir
        const args = ["connect", "--api", gateway.httpUrl, "--session-dir", dir]
        const env = { DISCORD_TOKEN: token }

        // First process: a steady stream; killed once a save has followed the stream (a
        // sequence past READY's is on disk) and it has printed a good part of it.
        const first = yield* launch(args, env)
        const identified = yield* gateway.awaitEntry((e) => e._tag === "Identified")
        const session = identified._tag === "Identified" ? identified.session : ""
        const stream = yield* Effect.forkChild(gateway.emit({ session }, { count: 100_000, perSecond: 400 }))
        yield* eventually(
          () => (storedSequence(dir) ?? 0) > 1 && printed(first.stdout()).length >= 600,
          "a saved sequence past READY and 600 events printed",
          "30 seconds",
        )
        first.kill("SIGKILL")
        yield* first.exited
        yield* Effect.sleep("300 millis") // more events while no process runs
        yield* Fiber.interrupt(stream)
        const saved = storedSequence(dir)
        const firstSaw = printed(first.stdout())
        const produced = (yield* gateway.sessions).find((s) => s.id === session)!.seq

        // Second process, same directory.
        const second = yield* launch(args, env)
        const resumed = yield* gateway.awaitEntry((e) => e._tag === "Resumed")
        yield* eventually(
          () => printed(second.stdout()).at(-1)! > produced,
          "the replay up to RESUMED printed",
          "30 seconds",
        )
        // Resumed, so no READY: the bot is known from GET /users/@me, and the app is ready.
        yield* eventually(
          () => second.stdout().includes("ready as vigil-fake-bot (1000000000000000001)"),
          "the second process ready",
          "30 seconds",
        )
        second.kill("SIGINT")
        yield* second.exited

        const entries = yield* gateway.entries
        assert.strictEqual(entries.filter((e) => e._tag === "Identified").length, 1, "no second identify")
        assert.strictEqual(
          resumed._tag === "Resumed" && resumed.from,
          saved,
          "resumed from the saved sequence",
        )
        assert.isNumber(saved)
        const from = saved as number
        // The saved sequence lags what the first process delivered by at most the save window
        // (1000 events or 1 s: 400 at this rate), so little is replayed twice...
        assert.isAtMost(from, firstSaw.at(-1)!)
        assert.isAtMost(firstSaw.at(-1)! - from, 1_000)
        // ...and nothing is skipped: everything after it, in order, each once.
        const secondSaw = printed(second.stdout())
        assert.deepStrictEqual(
          secondSaw,
          Array.from({ length: produced + 1 - from }, (_, i) => from + 1 + i),
          "the second process prints every event after the saved sequence, then RESUMED",
        )
        assert.notInclude(first.stdout() + second.stdout(), token)
      }),
  )
})
