/**
 * Tests run the workspace's TypeScript sources through the `@vigil/source` export condition
 * (vitest.shared.ts), so a stale `dist/` left by `tsc -b` can never stand in for them.
 */
import { assert, describe, it } from "@effect/vitest"

describe("workspace packages in tests", () => {
  it("resolve to their sources, not to dist", () => {
    for (const specifier of [
      "@vigil/gateway",
      "@vigil/gateway/testing",
      "@vigil/gateway-node",
      "@vigil/testing",
      "@vigil/testing/FakeGateway",
      "@vigil/provider",
    ]) {
      assert.match(import.meta.resolve(specifier), /\/packages\/[a-z-]+\/src\/[\w/]+\.ts$/, specifier)
    }
  })
})
