#!/bin/sh
# Library code (packages/*/src) never throws and never schedules with setTimeout/setInterval:
# failures are typed values and time goes through Effect's Clock, so TestClock drives it.
# @vigil/bench is not library code: it drives peer clients the plain-Node way they are used.
set -eu
cd "$(dirname "$0")/.."
hits=$(grep -rnE '\bthrow\b|\bsetTimeout\b|\bsetInterval\b' packages/*/src --include='*.ts' | grep -v '^packages/bench/' | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(//|\*)' || true)
if [ -n "$hits" ]; then
  echo "library code must not throw or use setTimeout/setInterval:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "library rules: ok (no throw, setTimeout or setInterval in packages/*/src, bench aside)"
