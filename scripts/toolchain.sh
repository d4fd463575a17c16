#!/bin/sh
# Puts a Node >= 22.19 and the pinned pnpm on PATH. Sourced by scripts/dev.sh.
# Machines here may only have an older Node and no pnpm: then both are fetched from the
# npm registry (the `node-<os>-<arch>` and `pnpm` packages carry them) into .tools/.
NODE_PIN=24.22.3
PNPM_PIN=10.34.9
VIGIL_ROOT=${VIGIL_ROOT:-$(git rev-parse --show-toplevel 2>/dev/null || pwd)}
TOOLS="$VIGIL_ROOT/.tools"

node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)'
}

fetch_pkg() { # fetch_pkg <spec> <dest>: unpack an npm package's tarball into dest
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$1" >/dev/null) || { echo "toolchain: could not fetch $1 from the npm registry" >&2; rm -rf "$tmp"; return 1; }
  mkdir -p "$2" && tar xzf "$tmp"/*.tgz -C "$2" --strip-components=1 && rm -rf "$tmp"
}

if ! node_ok; then
  if [ ! -x "$TOOLS/node/bin/node" ]; then
    os=$(uname -s | tr 'A-Z' 'a-z'); arch=$(uname -m)
    case "$arch" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; esac
    echo "toolchain: fetching node $NODE_PIN ($os-$arch) into .tools/node" >&2
    fetch_pkg "node-$os-$arch@$NODE_PIN" "$TOOLS/node" || exit 1
  fi
  PATH="$TOOLS/node/bin:$PATH"
fi

if [ ! -f "$TOOLS/pnpm-$PNPM_PIN/bin/pnpm.cjs" ]; then
  echo "toolchain: fetching pnpm $PNPM_PIN into .tools/pnpm-$PNPM_PIN" >&2
  fetch_pkg "pnpm@$PNPM_PIN" "$TOOLS/pnpm-$PNPM_PIN" || exit 1
fi
mkdir -p "$TOOLS/bin"
printf '#!/bin/sh\nexec node "%s" "$@"\n' "$TOOLS/pnpm-$PNPM_PIN/bin/pnpm.cjs" > "$TOOLS/bin/pnpm"
chmod +x "$TOOLS/bin/pnpm"
PATH="$TOOLS/bin:$PATH"
export PATH
