/**
 * Two runner processes on one PostgreSQL and one FakeGateway: the shard runs on exactly one of
 * them, and the gateway never holds two open sockets for it while it moves:
 * - `kill -9` of its owner moves it to the other, which RESUMEs the session saved through its
 *   ownership (no new Identify); no event is lost (a crash may replay the unsaved window: at
 *   most `sessionSave.events`);
 * - SIGTERM of its owner under traffic (a graceful leave): the events the app handled across
 *   both runners are exactly the events sent, none twice, none missing;
 * - the owner's database connection cut (TcpProxy): it closes its gateway socket before the
 *   lock expiry (3 s), and the other runner, which may take the lock at once (a reset
 *   connection frees it), resumes the shard only once the old one is gone;
 * - the owner partitioned from the database and the gateway at once (both links stalled: open,
 *   silent): it stops its shard but cannot say so; the other resumes it only once the gateway
 *   has dropped the silent socket — the gateway never sees two;
 * - the owner frozen past the lock expiry (SIGSTOP): woken, it hands nothing more to its app.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { ShardOwners, ShardSingleton } from "@vigil/cluster"
import { IdentifyThrottle, SessionStore } from "@vigil/gateway"
import { NodeCompression, NodeTransport } from "@vigil/gateway-node"
import { eventually } from "@vigil/testing/Eventually"
import * as FakeGateway from "@vigil/testing/FakeGateway"
import * as TcpProxy from "@vigil/testing/TcpProxy"
import { Effect, Fiber, Layer, Logger, Redacted } from "effect"
import { TestRunner } from "effect/cluster"
import * as TestDatabase from "./TestDatabase.ts"

const token = "cluster-test-token"
const fixture = path.join(import.meta.dirname, "fixtures", "shard-runner.ts")

const freePort = Effect.promise(
  () =>
    new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => resolve(port))
      })
    }),
)

interface Runner {
  readonly child: ChildProcess
  readonly lines: Array<string>
  readonly started: () => boolean
  /** How many times the shard has started here. */
  readonly starts: () => number
  readonly seqs: () => ReadonlyArray<number>
}

/** A runner process, killed when the test's scope closes. */
const runner = (url: Redacted.Redacted<string>, gatewayUrl: string, handleMillis = 0, route = "") =>
  Effect.gen(function* () {
    const port = yield* freePort
    return yield* Effect.acquireRelease(
      Effect.sync((): Runner => {
        const child = spawn(process.execPath, ["--conditions=@vigil/source", fixture], {
          env: {
            ...process.env,
            DATABASE_URL: Redacted.value(url),
            GATEWAY_URL: gatewayUrl,
            RUNNER_PORT: String(port),
            TOKEN: token,
            HANDLE_MILLIS: String(handleMillis),
            GATEWAY_ROUTE: route,
          },
          stdio: ["ignore", "pipe", "pipe"],
        })
        const lines: Array<string> = []
        let rest = ""
        child.stdout?.on("data", (chunk) => {
          const parts = (rest + chunk).split("\n")
          rest = parts.pop() ?? ""
          lines.push(...parts)
        })
        child.stderr?.on("data", () => {}) // cluster warnings after the kill are expected noise
        return {
          child,
          lines,
          started: () => lines.some((line) => line.startsWith("started")),
          starts: () => lines.filter((line) => line.startsWith("started")).length,
          seqs: () =>
            lines
              .filter((line) => line.startsWith("event MESSAGE_CREATE"))
              .map((line) => Number(line.split(" ")[2])),
        }
      }),
      ({ child }) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL")),
    )
  })

/** The gateway never had to drop a live connection because another resumed its session. */
const noSupersededConnection = (gateway: FakeGateway.FakeGatewayService) =>
  Effect.map(gateway.entries, (entries) =>
    assert.deepStrictEqual(
      entries.filter((entry) => entry._tag === "Fault" && entry.fault === "superseded"),
      [],
      "a resume took the session from a live connection",
    ),
  )

describe("ShardSingleton", () => {
  it.live(
    "a shard that stops for good logs why and keeps its singleton running (the engine would not restart it)",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token })
        const logs: Array<string> = []
        let ended = false
        const singleton = ShardSingleton.layer({
          shards: [[0, 1]],
          config: { token: Redacted.make("not-the-token"), intents: 513, gatewayUrl: gateway.url },
          run: () =>
            Effect.andThen(
              Effect.addFinalizer(() => Effect.sync(() => (ended = true))),
              Effect.never,
            ),
        })
        yield* Layer.build(
          singleton.pipe(
            Layer.provide(
              Layer.mergeAll(
                TestRunner.layer,
                NodeTransport.layer(),
                NodeCompression.layer,
                ShardOwners.ShardOwners.layerUnfenced.pipe(
                  Layer.provide(SessionStore.SessionStore.layerMemory),
                ),
                IdentifyThrottle.IdentifyThrottle.layer({ maxConcurrency: 1 }),
              ),
            ),
            Layer.provide(Logger.layer([Logger.make(({ message }) => void logs.push(String(message)))])),
          ),
        )
        yield* eventually(
          () => logs.some((line) => line.includes("shard stopped for good")),
          "the stop logged",
          "10 seconds",
        )
        assert.isTrue(
          logs.some((line) => line.includes("AuthenticationFailed") || line.includes("4004")),
          logs.join("\n"),
        )
        yield* Effect.sleep("500 millis")
        assert.isFalse(ended, "the singleton's effect ended")
      }),
  )
})

/** The most open sockets for shard 0 the gateway held at any instant, watched every 5 ms. */
const watchSockets = (gateway: FakeGateway.FakeGatewayService) =>
  Effect.gen(function* () {
    let most = 0
    const fiber = yield* Effect.forkScoped(
      Effect.forever(
        Effect.gen(function* () {
          // Every socket, authenticated or not: a resume opens its socket before it names its shard.
          const open = (yield* gateway.connections).filter((c) => c.state === "open")
          most = Math.max(most, open.length)
          yield* Effect.sleep("5 millis")
        }),
      ),
    )
    return { most: () => most, stop: Fiber.interrupt(fiber) }
  })
type Sockets = Effect.Success<ReturnType<typeof watchSockets>>

/**
 * Two runners (their database URLs given) with the placement settled: one open socket and no
 * new start for 3 s (the shard may move to the second runner once it joins, in a few hops).
 * The owner is whoever delivers the first events.
 */
const twoRunners = (
  gateway: FakeGateway.FakeGatewayService,
  urls: readonly [Redacted.Redacted<string>, Redacted.Redacted<string>],
  handleMillis = 0,
  routes: readonly [string, string] = ["", ""],
) =>
  Effect.gen(function* () {
    const first = yield* runner(urls[0], gateway.url, handleMillis, routes[0])
    yield* eventually(first.started, "the shard started on the first runner", "30 seconds")
    const second = yield* runner(urls[1], gateway.url, handleMillis, routes[1])
    const sockets = yield* watchSockets(gateway)
    const starts = () => [first, second].map((r) => r.starts()).join()
    let placement = starts()
    let stableSince = Date.now()
    yield* eventually(
      Effect.gen(function* () {
        const open = (yield* gateway.connections).filter((c) => c.state === "open").length
        if (starts() !== placement || open !== 1) {
          placement = starts()
          stableSince = Date.now()
        }
        return Date.now() - stableSince >= 3_000
      }),
      "the placement settled",
      "40 seconds",
    )
    const before = yield* gateway.emit({ shard: 0 }, { count: 20 })
    const delivered = (r: Runner) => r.seqs().includes(before.at(-1)!)
    yield* eventually(
      () => delivered(first) || delivered(second),
      "the first events delivered",
      "30 seconds",
    ).pipe(
      Effect.tapCause(() => Effect.sync(() => console.error(first.lines.slice(-5), second.lines.slice(-5)))),
    )
    const [owner, other] = delivered(second) ? [second, first] : [first, second]
    return { owner, other, ownerIndex: owner === first ? 0 : 1, before, sockets }
  })

/**
 * After the shard moved from `owner` to `other`: the other handled the last event sent, none
 * was lost, the session was resumed (never identified again), and the gateway never held two
 * open sockets at once.
 */
const handedOver = (
  gateway: FakeGateway.FakeGatewayService,
  { owner, other, sockets }: { readonly owner: Runner; readonly other: Runner; readonly sockets: Sockets },
  sent: ReadonlyArray<number>,
) =>
  Effect.gen(function* () {
    yield* eventually(
      () => other.seqs().includes(sent.at(-1)!),
      "the other runner handled the rest",
      "30 seconds",
    )
    yield* sockets.stop
    const seen = new Set([...owner.seqs(), ...other.seqs()])
    for (const seq of sent) assert.isTrue(seen.has(seq), `event ${seq} lost`)
    assert.strictEqual((yield* gateway.sessions).length, 1, "the new owner identified instead of resuming")
    assert.isAtMost(sockets.most(), 1, "two open sockets for one shard")
  })

/**
 * Whether the runner stopped its shard after its `from`th output line: fenced by its lease, or
 * stopped first by the cluster engine, which finds its lock gone (the app's part ended).
 */
const stoppedSince = (runner: Runner, from: number) =>
  runner.lines
    .slice(from)
    .some(
      (line) => line.startsWith("app ended") || (line.startsWith("log ") && line.includes("shard fenced")),
    )

/** `url` with its host and port replaced by a proxy's on 127.0.0.1. */
const through = (url: Redacted.Redacted<string>, port: number) => {
  const proxied = new URL(Redacted.value(url))
  proxied.hostname = "127.0.0.1"
  proxied.port = String(port)
  return Redacted.make(proxied.toString())
}

describe("ShardSingleton on two runner processes", () => {
  it.live(
    "kill -9 of the owner: the shard resumes on the other runner, never two open sockets, nothing lost",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { url } = yield* TestDatabase.TestDatabase
        // A slow app (15 ms an event, 100 events/s): killed, the owner had a backlog in its buffer,
        // which the saved sequence must not have counted.
        const { owner, other, before, sockets } = yield* twoRunners(gateway, [url, url], 15)
        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 200, perSecond: 100 }))
        yield* Effect.sleep("1 second")

        const startsBefore = other.starts()
        owner.child.kill("SIGKILL")
        const killedAt = Date.now()
        yield* eventually(
          () => other.starts() > startsBefore,
          "the shard started on the other runner",
          "30 seconds",
        )
        const failover = Date.now() - killedAt
        yield* handedOver(gateway, { owner, other, sockets }, [...before, ...(yield* Fiber.join(traffic))])
        // Lock expiry 3 s (the fixture's tuning): measured ~3.4 s from the kill to the shard
        // running on the other runner.
        assert.isBelow(failover, 10_000, "the failover took too long")
        yield* noSupersededConnection(gateway)
      }).pipe(Effect.provide(TestDatabase.fresh)),
    150_000,
  )

  it.live(
    "SIGTERM of the owner under traffic: the events handled across both runners are exactly those sent",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { url } = yield* TestDatabase.TestDatabase
        // The app takes 15 ms an event, the gateway sends one every 10 ms: when the owner leaves,
        // events wait in its buffer, already counted in the session's sequence.
        const { owner, other, before, sockets } = yield* twoRunners(gateway, [url, url], 15)

        // 150 events over ~1.5 s; the owner leaves 1 s in.
        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 150, perSecond: 100 }))
        yield* Effect.sleep("1 second")
        const startsBefore = other.starts()
        owner.child.kill("SIGTERM")
        const termAt = Date.now()
        yield* eventually(
          () => other.starts() > startsBefore,
          "the shard started on the other runner",
          "30 seconds",
        )
        const handoffMillis = Date.now() - termAt
        yield* eventually(() => owner.child.exitCode !== null, "the old owner exited", "30 seconds")
        const sent = [...before, ...(yield* Fiber.join(traffic))]
        yield* eventually(() => other.seqs().includes(sent.at(-1)!), "the last event handled", "30 seconds")
        yield* sockets.stop

        const handled = [...owner.seqs(), ...other.seqs()]
        const twice = handled.filter((seq, i) => handled.indexOf(seq) !== i)
        assert.deepStrictEqual(twice, [], "events handled twice")
        const seen = new Set(handled)
        assert.deepStrictEqual(
          sent.filter((seq) => !seen.has(seq)),
          [],
          "events lost",
        )
        assert.strictEqual(handled.length, sent.length)
        assert.isAbove(owner.seqs().length, before.length, "the owner left before the traffic reached it")
        assert.isAbove(other.seqs().length, 0)
        assert.strictEqual(
          (yield* gateway.sessions).length,
          1,
          "the new owner identified instead of resuming",
        )
        assert.isAtMost(sockets.most(), 1, "two open sockets for one shard")
        yield* noSupersededConnection(gateway)
        assert.isBelow(handoffMillis, 10_000, "the hand-off took too long")
      }).pipe(Effect.provide(TestDatabase.fresh)),
    150_000,
  )

  it.live(
    "the owner's database connection cut: it closes its socket before the lock expiry, the other resumes after",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { url } = yield* TestDatabase.TestDatabase
        const database = Number(new URL(Redacted.value(url)).port || "5432")
        const proxies = [
          yield* TcpProxy.make({ target: { port: database, host: new URL(Redacted.value(url)).hostname } }),
          yield* TcpProxy.make({ target: { port: database, host: new URL(Redacted.value(url)).hostname } }),
        ] as const
        const { owner, other, ownerIndex, before, sockets } = yield* twoRunners(gateway, [
          through(url, proxies[0].port),
          through(url, proxies[1].port),
        ])
        const [socket] = (yield* gateway.connections).filter((c) => c.state === "open")

        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 100, perSecond: 25 }))
        yield* Effect.sleep("500 millis")
        // A partition from the database: every link reset, no new one accepted.
        const proxy = proxies[ownerIndex]!
        yield* proxy.refuse(true)
        yield* proxy.cut
        const cutAt = Date.now()
        yield* eventually(
          Effect.map(gateway.connections, (all) => all.find((c) => c.id === socket!.id)?.state !== "open"),
          "the cut owner closed its gateway socket",
          "10 seconds",
        )
        const closedAfter = Date.now() - cutAt
        // Lease renewed every 0.5 s, fenceAfter 2 s, lock expiry 3 s (the fixture's tuning). The
        // engine may stop the singleton first (it releases its shards once its lock storage
        // fails): either way the socket must be gone before the expiry. (Fencing alone, without
        // the engine: Fencing.test.ts.)
        assert.isBelow(closedAfter, 3_000, "the cut owner kept its socket past the lock expiry")

        yield* handedOver(gateway, { owner, other, sockets }, [...before, ...(yield* Fiber.join(traffic))])
        yield* noSupersededConnection(gateway)
      }).pipe(Effect.provide(TestDatabase.fresh)),
    150_000,
  )

  it.live(
    "the owner partitioned from the database and the gateway at once: it fences itself, the other resumes once the gateway dropped the old socket, never two sockets, nothing lost",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { url } = yield* TestDatabase.TestDatabase
        const server = new URL(Redacted.value(url))
        const toDatabase = () =>
          TcpProxy.make({ target: { port: Number(server.port || "5432"), host: server.hostname } })
        const toGateway = () => TcpProxy.make({ target: { port: Number(new URL(gateway.url).port) } })
        const links = [
          { database: yield* toDatabase(), gateway: yield* toGateway() },
          { database: yield* toDatabase(), gateway: yield* toGateway() },
        ] as const
        const { owner, other, ownerIndex, before, sockets } = yield* twoRunners(
          gateway,
          [through(url, links[0].database.port), through(url, links[1].database.port)],
          0,
          // Each runner reaches the gateway (its resume URL too) only through its own link.
          [links[0].gateway.url, links[1].gateway.url],
        )
        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 200, perSecond: 50 }))
        yield* Effect.sleep("1 second")

        // A partition: both links stay open, no byte moves either way (a dead NAT entry).
        const startsBefore = other.starts()
        const linesAtCut = owner.lines.length
        const partitioned = links[ownerIndex]!
        yield* partitioned.database.stall
        yield* partitioned.gateway.stall
        yield* eventually(
          () => stoppedSince(owner, linesAtCut),
          "the partitioned owner stopped its shard",
          "15 seconds",
        )
        yield* eventually(
          () => other.starts() > startsBefore,
          "the shard started on the other runner",
          "30 seconds",
        )
        yield* handedOver(gateway, { owner, other, sockets }, [...before, ...(yield* Fiber.join(traffic))])
        assert.isTrue(
          other.lines.some((line) => line.includes("may still hold it")),
          "the takeover did not wait for the gateway to drop the silent socket",
        )
      }).pipe(Effect.provide(TestDatabase.fresh)),
    150_000,
  )

  it.live(
    "the owner frozen past the lock expiry (SIGSTOP): the other resumes the shard; woken, the old one handles nothing more",
    () =>
      Effect.gen(function* () {
        const gateway = yield* FakeGateway.make({ token, heartbeatInterval: 1_000 })
        const { url } = yield* TestDatabase.TestDatabase
        // A slow app (15 ms an event, 100 events/s): frozen, the owner has a backlog in its buffer,
        // which it never hands over once woken: the saved sequence must not have counted it.
        const { owner, other, before } = yield* twoRunners(gateway, [url, url], 15)

        const traffic = yield* Effect.forkScoped(gateway.emit({ shard: 0 }, { count: 400, perSecond: 100 }))
        yield* Effect.sleep("500 millis")
        const startsBefore = other.starts()
        owner.child.kill("SIGSTOP")
        yield* eventually(
          () => other.starts() > startsBefore,
          "the shard started on the other runner",
          "30 seconds",
        )
        // All it wrote before the freeze has been read by now.
        const handledFrozen = owner.seqs().length
        yield* eventually(() => other.seqs().length > 0, "the other runner handled events", "30 seconds")
        // Woken with what it had read before the freeze still in its buffer and socket. (Placement
        // may bring the shard back to it later: a new start, a new epoch, which then resumes.)
        const linesAtWake = owner.lines.length
        owner.child.kill("SIGCONT")
        const sent = [...before, ...(yield* Fiber.join(traffic))]
        const last = sent.at(-1)!
        yield* eventually(
          () => other.seqs().includes(last) || owner.seqs().includes(last),
          "the last event handled",
          "30 seconds",
        )
        yield* eventually(
          () => stoppedSince(owner, linesAtWake),
          "the woken owner stopped the shard",
          "20 seconds",
        )
        // What the woken owner handled before any new start of the shard there: nothing more.
        const restart = owner.lines.findIndex((line, i) => line.startsWith("started") && i > 0)
        const beforeRestart = owner.lines
          .slice(0, restart === -1 ? undefined : restart)
          .filter((line) => line.startsWith("event MESSAGE_CREATE")).length
        // At most the one in the app's hands at the freeze (pulled before it, finished after).
        assert.isAtMost(
          beforeRestart - handledFrozen,
          1,
          "the woken owner handled events after its lease ran out",
        )
        const seen = new Set([...owner.seqs(), ...other.seqs()])
        for (const seq of sent) assert.isTrue(seen.has(seq), `event ${seq} lost`)
        assert.strictEqual((yield* gateway.sessions).length, 1, "a new owner identified instead of resuming")
      }).pipe(Effect.provide(TestDatabase.fresh)),
    150_000,
  )
})
