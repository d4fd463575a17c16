import { describe, expect, it } from "@effect/vitest"
import { GatewayError, Protocol, ReconnectPolicy } from "@vigil/gateway"

const base: Omit<ReconnectPolicy.PolicyInput, "error"> = {
  hasSession: true,
  wasFailedResume: false,
  resumeFailures: 0,
  failuresSinceReady: 0,
}
const decide = (
  error: ReconnectPolicy.PolicyInput["error"],
  overrides: Partial<ReconnectPolicy.PolicyInput> = {},
) => ReconnectPolicy.decide({ ...base, error, ...overrides })

const closed = (code: number) =>
  GatewayError.fatalFromClose(code, "") ?? GatewayError.ServerClosed.fromCode(code, "")

describe("ReconnectPolicy.decide: close codes", () => {
  // PROTOCOL.md's table, row by row.
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
    expect(decision._tag).toBe(expected)
    if (decision._tag === "Stop") expect(decision.error._tag).toBe(fatalTag)
  })

  it("classifies each code the same way in Protocol", () => {
    for (const [code, expected] of table) {
      const action = Protocol.classifyClose(code)
      expect(action).toBe(expected === "Stop" ? "fatal" : expected === "Resume" ? "resume" : "identify")
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
    for (const error of resumable) expect(decide(error)._tag, error._tag).toBe("Resume")
  })

  it("a compression codec missing from the runtime stops the shard: retrying cannot help", () => {
    const decision = decide(new GatewayError.CompressionUnavailable({ compression: "zstd-stream" }))
    expect(decision._tag).toBe("Stop")
  })

  it("Invalid Session (false) identifies after the 1–5 s wait", () => {
    expect(decide(new GatewayError.InvalidSession({ resumable: false }))).toEqual({
      _tag: "Identify",
      wait: { _tag: "InvalidSession" },
      reason: "invalid session",
    })
    expect(ReconnectPolicy.invalidSessionMillis(0)).toBe(1_000)
    expect(ReconnectPolicy.invalidSessionMillis(0.999_999)).toBe(5_000)
  })

  it("without a session, a resumable outcome identifies", () => {
    expect(decide(new GatewayError.ReconnectRequested(), { hasSession: false })._tag).toBe("Identify")
  })

  it("breaks resume loops: after maxResumeAttempts failed resumes in a row, identify", () => {
    const error = closed(4000)
    expect(decide(error, { wasFailedResume: true, resumeFailures: 2 })._tag).toBe("Resume")
    expect(decide(error, { wasFailedResume: true, resumeFailures: 3 })._tag).toBe("Identify")
    expect(
      ReconnectPolicy.decide(
        { ...base, error, wasFailedResume: true, resumeFailures: 1 },
        { ...ReconnectPolicy.defaultConfig, maxResumeAttempts: 1 },
      )._tag,
    ).toBe("Identify")
  })

  it("reconnects at once after a healthy connection, backs off when failures repeat", () => {
    const error = closed(4000)
    expect(decide(error, { failuresSinceReady: 0 })).toMatchObject({ wait: { _tag: "None" } })
    expect(decide(error, { failuresSinceReady: 1 })).toMatchObject({ wait: { _tag: "Backoff", failures: 1 } })
    expect(decide(error, { failuresSinceReady: 4 })).toMatchObject({ wait: { _tag: "Backoff", failures: 4 } })
  })

  it("backoff grows exponentially with equal jitter, capped", () => {
    const config = ReconnectPolicy.defaultConfig
    expect(ReconnectPolicy.backoffMillis(1, 0, config)).toBe(500)
    expect(ReconnectPolicy.backoffMillis(1, 1, config)).toBe(1_000)
    expect(ReconnectPolicy.backoffMillis(2, 0.5, config)).toBe(1_500)
    expect(ReconnectPolicy.backoffMillis(3, 0.5, config)).toBe(3_000)
    expect(ReconnectPolicy.backoffMillis(7, 1, config)).toBe(60_000)
    expect(ReconnectPolicy.backoffMillis(50, 1, config)).toBe(60_000)
    expect(ReconnectPolicy.backoffMillis(50, 0, config)).toBe(30_000)
  })
})
