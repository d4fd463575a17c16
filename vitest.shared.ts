/**
 * Tests run the workspace's TypeScript sources, never a built `dist/`: every workspace package
 * exports them under the `@vigil/source` condition, listed first, so a stale build cannot shadow
 * them. Each package's vitest.config.ts spreads this in.
 */
const conditions = ["@vigil/source", "module", "node", "development|production"]

export const sourceResolution = {
  resolve: { conditions },
  ssr: { resolve: { conditions } },
}
