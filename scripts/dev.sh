#!/bin/sh
# The one entry point: `sh scripts/dev.sh <demo|test|bench|...>` (npm run demo / npm test call it).
# It brings a Node >= 22.19 and pnpm when the machine lacks them, installs the locked
# dependencies when they changed, then runs the job.
set -eu
VIGIL_ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
. "$VIGIL_ROOT/scripts/toolchain.sh"
cd "$VIGIL_ROOT"

stamp=node_modules/.vigil-lock
if [ ! -f "$stamp" ] || ! cmp -s pnpm-lock.yaml "$stamp"; then
  pnpm install --frozen-lockfile --reporter=append-only >&2
  cp pnpm-lock.yaml "$stamp"
fi

job=${1:-help}
[ $# -gt 0 ] && shift
case "$job" in
  demo) exec node --conditions=@vigil/source packages/cli/src/main.ts demo "$@" ;;
  demo:cluster)
    . scripts/postgres.sh # the runners' PostgreSQL
    exec node --conditions=@vigil/source packages/cluster/demo/main.ts "$@" ;;
  vigil) exec node --conditions=@vigil/source packages/cli/src/main.ts "$@" ;;
  node) exec node --conditions=@vigil/source "$@" ;;
  bench) exec node --conditions=@vigil/source packages/bench/src/main.ts "$@" ;;
  test)
    # One step per line: under `set -e` a failure in the middle of an && list would not stop us.
    echo "== typecheck"
    pnpm exec tsc -b
    echo "== lint"
    pnpm exec biome check .
    sh scripts/check-library.sh
    echo "== cycles"
    node scripts/cycles.ts
    echo "== consumer"
    sh scripts/consumer.sh
    echo "== postgres"
    . scripts/postgres.sh
    echo "postgres: ${DATABASE_URL%%://*}://…@${DATABASE_URL#*@}"
    echo "== tests"
    exec pnpm exec vitest run "$@" ;;
  fmt) exec pnpm exec biome check --write . ;;
  readme) exec node scripts/readme.ts --write ;;
  vitest)
    . scripts/postgres.sh # @vigil/cluster's tests need one
    exec pnpm exec vitest "$@" ;;
  *) echo "usage: sh scripts/dev.sh <demo|demo:cluster|test|bench|fmt|readme|vitest|vigil|node ...>" >&2; exit 2 ;;
esac
