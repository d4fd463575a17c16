#!/bin/sh
# Library code (packages/*/src) never throws, never schedules with setTimeout/setInterval and
# never reads Date.now or Math.random: failures are typed values, time goes through Effect's
# Clock (so TestClock drives it) and randomness through Random (so a test can pin it).
# @vigil/bench is not library code: it drives peer clients the plain-Node way they are used.
set -eu
cd "$(dirname "$0")/.."
hits=$(grep -rnE '\bthrow\b|\bsetTimeout\b|\bsetInterval\b|\bDate\.now\b|\bMath\.random\b' packages/*/src --include='*.ts' | grep -v '^packages/bench/' | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(//|\*)' || true)
if [ -n "$hits" ]; then
  echo "library code must not throw or use setTimeout/setInterval/Date.now/Math.random:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "library rules: ok (no throw, setTimeout, setInterval, Date.now or Math.random in packages/*/src, bench aside)"
