// The test projects; vitest.config.ts hands this list to `test.projects`.
export default [
  "packages/gateway",
  "packages/gateway-node",
  "packages/testing",
  "packages/cli",
  "packages/provider",
  "packages/cluster",
  "scripts",
]
