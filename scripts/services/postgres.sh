# PostgreSQL from Debian's packages, run as the `postgres` system user when we are root
# (the server refuses to run as root).
# shellcheck shell=bash

PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-flotilla}
PG_PASSWORD=${PG_PASSWORD:-flotilla}
PG_DB=${PG_DB:-flotilla}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [[ -x $d/postgres ]] && { printf '%s' "$d"; return; }; done
  return 1
}

# pg_as CMD...: run a PostgreSQL tool as the server's owner.
pg_as() {
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_install() {
  pg_bin >/dev/null || apt_install postgresql
}

postgres_start() {
  local bin dir data
  bin=$(pg_bin) || die "PostgreSQL binaries not found"
  dir=$(svc_dir postgres)
  data=$dir/data
  ((EUID == 0)) && chown postgres: "$dir"
  if [[ ! -f $data/PG_VERSION ]]; then
    log "postgres: initdb in $data"
    local pwfile; pwfile=$(mktemp); printf '%s\n' "$PG_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
    pg_as "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
  fi
  if port_open 127.0.0.1 "$PG_PORT" && postgres_ready; then return 0; fi
  # pg_ctl daemonizes the postmaster itself; its log goes beside the data.
  pg_as "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  wait_until 60 postgres postgres_ready || return 1
  if ! pg_as "$bin/psql" -h "$dir" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    pg_as "$bin/createdb" -h "$dir" -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
  fi
}

postgres_ready() {
  local bin; bin=$(pg_bin) || return 1
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER"
}

postgres_stop() {
  local bin data=$FLOTILLA_RUN/postgres/data
  bin=$(pg_bin) || return 0
  [[ -f $data/postmaster.pid ]] || return 0
  pg_as "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

postgres_env() {
  printf 'PG_URL=postgres://%s:%s@127.0.0.1:%s/%s\n' "$PG_USER" "$PG_PASSWORD" "$PG_PORT" "$PG_DB"
}
