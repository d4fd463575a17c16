import { assert, describe, it } from "@effect/vitest"
import { GatewayError, Protocol, ReconnectPolicy } from "@vigil/gateway"

const base: Omit<ReconnectPolicy.PolicyInput, "error"> = {
  hasSession: true,
  wasFailedResume: false,
  resumeFailures: 0,
  failuresSinceHealthy: 0,
  sinceAttemptMillis: 60_000,
}
const decide = (
  error: ReconnectPolicy.PolicyInput["error"],
  overrides: Partial<ReconnectPolicy.PolicyInput> = {},
) => ReconnectPolicy.decide({ ...base, error, ...overrides })

const closed = (code: number) =>
  GatewayError.fatalFromClose(code, "") ?? GatewayError.ServerClosed.fromCode(code, "")

describe("ReconnectPolicy.decide: close codes", () => {
  // The close code table of docs/protocol.md, row by row.
  const table: Array<[number, "Resume" | "Identify" | "Stop", string?]> = [
    [4000, "Resume"],
    [4001, "Resume"],
    [4002, "Resume"],
    [4003, "Identify"],
    [4004, "Stop", "AuthenticationFailed"],
    [4005, "Identify"],
    [4007, "Identify"],
    [4008, "Identify"],
    [4009, "Identify"],
    [4010, "Stop", "InvalidShard"],
    [4011, "Stop", "ShardingRequired"],
    [4012, "Stop", "InvalidApiVersion"],
    [4013, "Stop", "InvalidIntents"],
    [4014, "Stop", "DisallowedIntents"],
    [1000, "Identify"],
    [1001, "Identify"],
    [1005, "Resume"],
    [1006, "Resume"],
    [4900, "Resume"],
    [3000, "Resume"],
  ]
  it.each(table)("close %i → %s", (code, expected, fatalTag) => {
    const decision = decide(closed(code))
    assert.strictEqual(decision._tag, expected)
    if (decision._tag === "Stop") assert.strictEqual(decision.error._tag, fatalTag)
  })

  it("classifies each code the same way in Protocol", () => {
    for (const [code, expected] of table) {
      const action = Protocol.classifyClose(code)
      assert.strictEqual(
        action,
        expected === "Stop" ? "fatal" : expected === "Resume" ? "resume" : "identify",
        `close ${code}`,
      )
    }
  })
})

describe("ReconnectPolicy.decide: outcomes", () => {
  it("zombie, op 7, timeouts, decode and transport errors resume", () => {
    const resumable = [
      new GatewayError.ZombieDetected({ shard: [0, 1], intervalMillis: 1, lastAckAt: null, waitedMillis: 1 }),
      new GatewayError.ReconnectRequested(),
      new GatewayError.InvalidSession({ resumable: true }),
      new GatewayError.HelloTimeout({ timeoutMillis: 1 }),
      new GatewayError.HandshakeTimeout({ handshake: "resume", timeoutMillis: 1 }),
      new GatewayError.DecodeError({ stage: "json", detail: "", bytes: 1 }),
      new GatewayError.TransportError({ stage: "read", detail: "" }),
    ]
    for (const error of resumable) assert.strictEqual(decide(error)._tag, "Resume", error._tag)
  })

  it("a compression codec missing from the runtime stops the shard: retrying cannot help", () => {
    const decision = decide(new GatewayError.CompressionUnavailable({ compression: "zstd-stream" }))
    assert.strictEqual(decision._tag, "Stop")
  })

  it("Invalid Session (false) identifies after the 1–5 s wait", () => {
    assert.deepStrictEqual(decide(new GatewayError.InvalidSession({ resumable: false })), {
      _tag: "Identify",
      wait: { _tag: "InvalidSession" },
      reason: "invalid session",
    })
    assert.strictEqual(ReconnectPolicy.invalidSessionMillis(0), 1_000)
    assert.strictEqual(ReconnectPolicy.invalidSessionMillis(0.999_999), 5_000)
  })

  it("without a session, a resumable outcome identifies", () => {
    assert.strictEqual(decide(new GatewayError.ReconnectRequested(), { hasSession: false })._tag, "Identify")
  })

  it("breaks resume loops: after maxResumeAttempts failed resumes in a row, identify", () => {
    const error = closed(4000)
    assert.strictEqual(decide(error, { wasFailedResume: true, resumeFailures: 2 })._tag, "Resume")
    assert.strictEqual(decide(error, { wasFailedResume: true, resumeFailures: 3 })._tag, "Identify")
    assert.strictEqual(
      ReconnectPolicy.decide(
        { ...base, error, wasFailedResume: true, resumeFailures: 1 },
        { ...ReconnectPolicy.defaultConfig, maxResumeAttempts: 1 },
      )._tag,
      "Identify",
    )
  })

  // (connections that failed before proving healthy, ms since the ended attempt started) → wait
  const waits: Array<[number, number, ReconnectPolicy.Wait]> = [
    [0, 60_000, { _tag: "None" }], // a long healthy connection ended: at once
    [0, 1_000, { _tag: "None" }],
    [0, 999, { _tag: "Floor", millis: 1 }],
    [0, 250, { _tag: "Floor", millis: 750 }], // healthy but short: still one attempt per second
    [0, 0, { _tag: "Floor", millis: 1_000 }],
    [1, 0, { _tag: "Backoff", failures: 1, floorMillis: 1_000 }],
    [1, 400, { _tag: "Backoff", failures: 1, floorMillis: 600 }],
    [4, 60_000, { _tag: "Backoff", failures: 4, floorMillis: 0 }],
  ]
  it.each(waits)("%i failures, attempt started %i ms ago → %j", (failures, since, wait) => {
    const decision = decide(closed(4000), { failuresSinceHealthy: failures, sinceAttemptMillis: since })
    assert.deepStrictEqual(decision._tag === "Stop" ? undefined : decision.wait, wait)
  })

  it("no wait is ever under the 1 s floor counted from the last attempt's start", () => {
    const outcomes = [closed(4000), closed(1006), closed(4009), new GatewayError.ReconnectRequested()]
    for (const error of outcomes) {
      for (const failuresSinceHealthy of [0, 1, 2, 10]) {
        for (const since of [0, 1, 500, 999, 1_000, 5_000]) {
          for (const random of [0, 0.5, 0.999]) {
            const decision = decide(error, { failuresSinceHealthy, sinceAttemptMillis: since })
            if (decision._tag === "Stop") continue
            const millis = ReconnectPolicy.waitMillis(decision.wait, random)
            assert.isAtLeast(since + millis, ReconnectPolicy.attemptFloorMillis, `${error._tag} ${since}`)
          }
        }
      }
    }
  })

  it("waitMillis: backoff never under its floor, Invalid Session 1–5 s", () => {
    const waitMillis = ReconnectPolicy.waitMillis
    assert.strictEqual(waitMillis({ _tag: "None" }, 0.5), 0)
    assert.strictEqual(waitMillis({ _tag: "Floor", millis: 300 }, 0.5), 300)
    assert.strictEqual(waitMillis({ _tag: "Backoff", failures: 1, floorMillis: 1_000 }, 0), 1_000) // 500 raised
    assert.strictEqual(waitMillis({ _tag: "Backoff", failures: 3, floorMillis: 1_000 }, 0.5), 3_000)
    assert.strictEqual(waitMillis({ _tag: "InvalidSession" }, 0), 1_000)
  })

  // (READY/RESUMED at, ACK after it, ended at) → proved healthy (default: 5 s up)
  const uptimes: Array<[number | undefined, boolean, number, boolean]> = [
    [undefined, false, 60_000, false], // never completed the handshake
    [undefined, true, 60_000, false], // ACKs alone prove nothing
    [1_000, false, 1_000, false], // closed right after READY/RESUMED
    [1_000, false, 5_999, false],
    [1_000, false, 6_000, true], // 5 s up
    [1_000, true, 1_001, true], // a heartbeat ACKed after READY/RESUMED
  ]
  it.each(uptimes)(
    "READY at %s, ACK after: %s, ended at %i → healthy: %s",
    (readyAt, acked, endedAt, healthy) => {
      assert.strictEqual(ReconnectPolicy.provedHealthy({ readyAt, ackedAfterReady: acked, endedAt }), healthy)
    },
  )

  it("backoff grows exponentially with equal jitter, capped", () => {
    const config = ReconnectPolicy.defaultConfig
    const table: Array<[number, number, number]> = [
      [1, 0, 500],
      [1, 1, 1_000],
      [2, 0.5, 1_500],
      [3, 0.5, 3_000],
      [7, 1, 60_000],
      [50, 1, 60_000],
      [50, 0, 30_000],
    ]
    for (const [failures, random, millis] of table) {
      assert.strictEqual(ReconnectPolicy.backoffMillis(failures, random, config), millis)
    }
  })
})
