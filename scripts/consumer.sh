#!/bin/sh
# The consumer test (run by `scripts/dev.sh test`): Vigil used the way a user gets it.
# Builds the library packages from scratch, packs them (pnpm turns `workspace:` ranges into
# versions), installs the tarballs with npm into a copy of scripts/consumer/ outside the
# workspace (no links, no overrides; everything else from the npm registry, through npm's
# cache), then: (a) plain `node` runs a Shard against FakeGateway to READY, (b) a strict
# `tsc` typechecks the project against the packed .d.ts, (c) vitest runs a test on the test
# layers, (d) `npx vigil demo` exits 0; and the tree holds exactly one copy of `effect`, and
# internals are not importable.
# Expects the project's toolchain on PATH (scripts/dev.sh puts it there). KEEP=1 keeps the
# temporary directory for a look after a failure.
set -eu
cd "$(dirname "$0")/.."
started=$(date +%s)
packages="gateway gateway-node testing provider cli cluster"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-consumer.XXXXXX")
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$tmp"' EXIT
log="$tmp/step.log"

# step <name> <command...>: runs quietly; on failure shows the output and names the step.
# (A function called left of `||` runs without `set -e`: each one below chains with && itself.)
step() {
  name=$1
  shift
  t0=$(date +%s)
  "$@" >"$log" 2>&1 || {
    rc=$?
    cat "$log" >&2
    echo "consumer test FAILED at step: $name (exit $rc; KEEP=1 keeps the project)" >&2
    exit 1
  }
  echo "consumer: $name ($(($(date +%s) - t0)) s)"
}

build() {
  # A stale file in dist/ (a module since moved or deleted) must not reach a tarball.
  for p in $packages; do rm -rf "packages/$p/dist" "packages/$p/build/src.tsbuildinfo" || return 1; done
  pnpm exec tsc -b $(for p in $packages; do echo "packages/$p"; done)
}

pack() {
  for p in $packages; do (cd "packages/$p" && pnpm pack --pack-destination "$tmp/tarballs") || return 1; done
}

install() {
  cp -R scripts/consumer "$tmp/app" &&
    (cd "$tmp/app" && timeout 300 npm install --prefer-offline --no-audit --no-fund --loglevel=error "$tmp"/tarballs/*.tgz)
}

one_effect() {
  copies=$(cd "$tmp/app" && find node_modules -path '*node_modules/effect/package.json' | sort) &&
    echo "copies of effect:" && echo "$copies" &&
    [ "$(echo "$copies" | wc -l)" -eq 1 ] &&
    (cd "$tmp/app" && npm ls --all effect)
}

# Internals stay internal: "./internal/*": null in every package's exports.
no_internals() {
  node --input-type=module -e '
    try { await import("@vigil/testing/internal/State"); process.exit(1) }
    catch (e) { if (e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e }'
}

run_in_app() { (cd "$tmp/app" && "$@"); }

step "build the packages (tsc -b)" build
step "pnpm pack" pack
step "npm install the tarballs into a fresh project" install
step "exactly one copy of effect" one_effect
step "internals are not importable" run_in_app no_internals
step "(a) node runs a Shard to READY against FakeGateway" run_in_app timeout 60 node src/main.ts
grep READY "$log"
step "(b) strict tsc typechecks the project" run_in_app npx --no -- tsc -p .
step "(c) vitest runs a test on the test layers" run_in_app npx --no -- vitest run
step "(d) npx vigil demo exits 0" run_in_app timeout 120 npx --no -- vigil demo
echo "consumer test: ok in $(($(date +%s) - started)) s"
