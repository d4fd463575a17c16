#!/usr/bin/env node
// The `vigil` command: Node (>= 22.19) runs the TypeScript sources directly.
import "../src/main.ts"
