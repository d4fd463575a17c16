#!/bin/sh
# A PostgreSQL for the tests. Sourced by scripts/dev.sh (it exports DATABASE_URL), or run
# alone: `sh scripts/postgres.sh` prints the URL.
# - DATABASE_URL set: used as it is (its user needs CREATEDB: each test makes its own database).
# - else, as root with Debian's pg_ctlcluster: the machine's cluster, started if down, with a
#   `vigil` login role (password auth over 127.0.0.1, CREATEDB) and a `vigil` database.
# - else (or VIGIL_POSTGRES=private): a private cluster in $TMPDIR/vigil-postgres-<uid> on a
#   free port, kept running between calls; as root it runs as the `postgres` user (initdb
#   refuses root).
# Idempotent: a running cluster costs one psql round trip. Tests never assume a port.

vigil_pg_fail() {
  echo "postgres: $*" >&2
  exit 1
}

vigil_pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# vigil_pg_ensure_role <psql command...>: the test role and database, created once.
vigil_pg_ensure_role() {
  "$@" -v ON_ERROR_STOP=1 -qAt -d postgres >/dev/null <<'SQL' || return 1
SELECT 'CREATE ROLE vigil LOGIN CREATEDB PASSWORD ''vigil'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vigil') \gexec
SELECT 'CREATE DATABASE vigil OWNER vigil'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'vigil') \gexec
SQL
}

vigil_pg_machine() {
  line=$(pg_lsclusters -h 2>/dev/null | sort -V | tail -n 1)
  [ -n "$line" ] || return 1
  set -- $line
  version=$1 name=$2 port=$3 status=$4
  case "$status" in
    online*) ;;
    *) pg_ctlcluster "$version" "$name" start >&2 || vigil_pg_fail "pg_ctlcluster $version $name start failed (see /var/log/postgresql/)" ;;
  esac
  vigil_pg_ensure_role runuser -u postgres -- psql -p "$port" ||
    vigil_pg_fail "could not create the vigil role in cluster $version/$name"
  DATABASE_URL="postgres://vigil:vigil@127.0.0.1:$port/vigil"
}

vigil_pg_private() {
  bin=$(vigil_pg_bindir)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || vigil_pg_fail "no PostgreSQL found (install postgresql, or set DATABASE_URL)"
  dir="${TMPDIR:-/tmp}/vigil-postgres-$(id -u)"
  as=""
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || vigil_pg_fail "running as root needs a 'postgres' user for a private cluster (initdb refuses root)"
    as="runuser -u postgres --"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir" && mkdir -p "$dir" || vigil_pg_fail "cannot create $dir"
    [ -z "$as" ] || chown postgres "$dir"
    $as "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
      vigil_pg_fail "initdb failed: $(tail -n 5 "$dir/initdb.log")"
  fi
  if ! $as "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    # A free port now; kept in the data directory's options for the next start.
    port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})') ||
      vigil_pg_fail "node is needed to find a free port"
    $as "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >&2 ||
      vigil_pg_fail "the private cluster did not start: $(tail -n 5 "$dir/data/server.log")"
    echo "$port" >"$dir/port"
  fi
  port=$(cat "$dir/port")
  vigil_pg_ensure_role $as "$bin/psql" -h "$dir" -p "$port" -U postgres ||
    vigil_pg_fail "could not create the vigil role in the private cluster"
  DATABASE_URL="postgres://vigil:vigil@127.0.0.1:$port/vigil"
}

if [ -z "${DATABASE_URL:-}" ]; then
  if [ "${VIGIL_POSTGRES:-}" != private ] && [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null 2>&1 &&
    [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
    vigil_pg_machine
  else
    vigil_pg_private
  fi
fi
export DATABASE_URL
# Run alone (not sourced): print the URL for the caller.
case "$0" in */postgres.sh | postgres.sh) echo "$DATABASE_URL" ;; esac
