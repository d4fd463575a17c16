/**
 * Compression bombs (issue 15 item 4): one small frame that decompresses to millions of
 * tiny messages. The heap must stay within what the configured limits allow, and the shard
 * must shrug it off (drop the connection, resume) within the usual rate. In a file of its
 * own: the heap is the process's, so nothing else may run beside these cases.
 */
import { assert, describe, it } from "@effect/vitest"
import { Invariants, Recording } from "@vigil/testing"
import { Effect } from "effect"
import { run } from "./harness.ts"

const maxMessageBytes = 1024 * 1024
/** What decoding may hold beyond the limit: a few output chunks, and the noise of a live process. */
const slackBytes = 48 * 1024 * 1024
/** 32 MiB of `{}`, a few KiB on the wire. */
const count = 16 * 1024 * 1024

describe("compression bombs of many tiny messages", () => {
  const cases = [{ compression: "zstd-stream" }, { compression: "zlib-stream" }] as const

  for (const c of cases) {
    it.live(`${c.compression}: the heap stays bounded`, () =>
      Effect.gen(function* () {
        const baseline = process.memoryUsage().heapUsed
        const heap = yield* Invariants.heapPeak()
        const out = yield* run({
          shard: { compression: c.compression, maxMessageBytes },
          millis: 4_000,
          act: (gateway) => Effect.asVoid(gateway.bomb("latest", { count })),
        })
        assert.lengthOf(Recording.faults(out.entries, "bomb"), 1, "the bomb went off")
        assert.isAtLeast(out.attempts.length, 2, "the connection was given up")
        assert.strictEqual(out.statuses.at(-1)?.state._tag, "Ready", "and the shard is back")
        assert.deepStrictEqual(
          [
            ...out.violations,
            ...Invariants.heapBounded(baseline, heap.peak(), 2 * maxMessageBytes + slackBytes),
          ],
          [],
        )
      }),
    )
  }
})
