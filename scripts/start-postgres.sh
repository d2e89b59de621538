#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for tests and benches and print its URL.
#
#   export NOTIFIER_TEST_DATABASE_URL="$(scripts/start-postgres.sh)"
#
# As root on a fresh Debian machine it installs PostgreSQL when missing, then runs the
# cluster as the `postgres` user; as any other user it runs the cluster as that user
# (PostgreSQL must already be installed). The cluster lives under a temporary directory,
# listens on 127.0.0.1 only, on a free high port, with a random password (scram-sha-256).
# Only the URL goes to stdout; progress and the stop command go to stderr.
#
# Environment:
#   PG_PORT    port to use (default: a free one in 20000-60000)
#   PG_DIR     directory for the cluster (default: mktemp -d)
#   PG_FSYNC   "off" for faster, non-durable test runs (default: on, as in production)
#   PG_DB      database and role name (default: notifier)
set -euo pipefail

log() { echo "start-postgres: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
    fi
}

BIN=$(find_bin)
if [[ -z "$BIN" ]]; then
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    log "installing PostgreSQL (apt-get)"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    BIN=$(find_bin)
    [[ -n "$BIN" ]] || die "initdb/pg_ctl not found under /usr/lib/postgresql/*/bin after install"
fi

if [[ $EUID -eq 0 ]]; then
    RUN_AS=postgres
    id -u "$RUN_AS" >/dev/null 2>&1 || die "user $RUN_AS does not exist (is the postgresql package installed?)"
    as_owner() { runuser -u "$RUN_AS" -- "$@"; }
else
    RUN_AS=$(id -un)
    as_owner() { "$@"; }
fi

port_in_use() {
    # A successful connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PORT=${PG_PORT:-}
if [[ -z "$PORT" ]]; then
    for _ in $(seq 1 200); do
        candidate=$(( 20000 + RANDOM % 40000 ))
        if ! port_in_use "$candidate"; then
            PORT=$candidate
            break
        fi
    done
    [[ -n "$PORT" ]] || die "no free port found"
elif port_in_use "$PORT"; then
    die "port $PORT is in use"
fi

DIR=${PG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/notifier-pg.XXXXXX")}
mkdir -p "$DIR"
chmod 700 "$DIR"
[[ $EUID -eq 0 ]] && chown "$RUN_AS": "$DIR"
[[ -e "$DIR/data" ]] && die "$DIR/data already exists"

NAME=${PG_DB:-notifier}
[[ "$NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "PG_DB must be a plain lower-case identifier"
PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
PWFILE="$DIR/.pw"
( umask 077; printf '%s\n' "$PASSWORD" > "$PWFILE" )
[[ $EUID -eq 0 ]] && chown "$RUN_AS": "$PWFILE"

log "initdb in $DIR/data (PostgreSQL $(basename "$(dirname "$BIN")"), running as $RUN_AS)"
as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=scram-sha-256 --pwfile="$PWFILE" \
    --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

FSYNC=${PG_FSYNC:-on}
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=$FSYNC -c max_connections=200" \
    start >&2 || { cat "$DIR/postgres.log" >&2; die "pg_ctl start failed"; }

export PGPASSWORD=$PASSWORD
PSQL=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
as_owner env PGPASSWORD="$PASSWORD" "${PSQL[@]}" \
    -c "CREATE ROLE $NAME LOGIN PASSWORD '$PASSWORD'" \
    -c "CREATE DATABASE $NAME OWNER $NAME" >&2 || die "creating role/database failed"
rm -f "$PWFILE"

URL="postgresql://$NAME:$PASSWORD@127.0.0.1:$PORT/$NAME"
( umask 077; printf '%s\n' "$URL" > "$DIR/url" )
[[ $EUID -eq 0 ]] && chown "$RUN_AS": "$DIR/url"
log "running on 127.0.0.1:$PORT (data $DIR/data, log $DIR/postgres.log)"
if [[ $EUID -eq 0 ]]; then
    log "stop with: runuser -u $RUN_AS -- $BIN/pg_ctl -D $DIR/data stop -m fast"
else
    log "stop with: $BIN/pg_ctl -D $DIR/data stop -m fast"
fi
echo "$URL"
