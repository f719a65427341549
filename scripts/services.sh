#!/usr/bin/env bash
# Brings up, natively and on loopback, every service Flotilla talks to — for machines
# without a Docker engine (with Docker, `docker compose up -d` gives the same set).
#
#   scripts/services.sh up [SERVICE...]      install what is missing, start, wait until each answers
#   scripts/services.sh down [SERVICE...]    stop what this script started
#   scripts/services.sh status [SERVICE...]  say which services answer (exit 1 if any does not)
#   scripts/services.sh env                  print connection settings as `export KEY=value` lines
#
# SERVICE is one of: postgres redis clickhouse kafka schema-registry mongo (default: all).
# Data, logs and pid files live in $FLOTILLA_RUN (default $FLOTILLA_HOME/run), downloads
# and builds in $FLOTILLA_CACHE (default $FLOTILLA_HOME/cache); FLOTILLA_HOME defaults to
# /var/lib/flotilla for root and ~/.flotilla otherwise. Ports: see each scripts/services/*.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=services/lib.sh
source "$here/services/lib.sh"

ALL=(postgres redis clickhouse kafka schema-registry mongo)
for svc in "${ALL[@]}"; do
  # shellcheck disable=SC1090
  source "$here/services/$svc.sh"
done

fn() { printf '%s_%s' "${1//-/_}" "$2"; }

check_names() {
  local s a ok
  for s in "$@"; do
    ok=0
    for a in "${ALL[@]}"; do [[ $s == "$a" ]] && ok=1; done
    ((ok)) || die "unknown service '$s' (expected one of: ${ALL[*]})"
  done
}

# run_lanes VERB SERVICE...: run VERB for each service; lanes run in parallel, services
# within a lane in order. Debian installs share one apt lock, so those share a lane.
run_lanes() {
  local verb=$1; shift
  local -a want=("$@") lanes=("postgres redis clickhouse" "kafka" "schema-registry" "mongo")
  local -a pids=() names=()
  local lane s logdir="$FLOTILLA_RUN/.lanes"
  mkdir -p "$logdir"
  for lane in "${lanes[@]}"; do
    local -a mine=()
    for s in $lane; do [[ " ${want[*]} " == *" $s "* ]] && mine+=("$s"); done
    ((${#mine[@]})) || continue
    (
      for s in "${mine[@]}"; do
        local t0=$SECONDS
        "$(fn "$s" "$verb")" || { log "$s: $verb failed (log: $FLOTILLA_RUN/$s/)"; exit 1; }
        log "$s: $verb done in $((SECONDS - t0))s"
      done
    ) &
    pids+=($!)
    names+=("${mine[*]}")
  done
  local i failed=0
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || { failed=1; log "failed: ${names[$i]}"; }; done
  return $failed
}

cmd=${1:-}
shift || true
check_names "$@"
(($#)) && targets=("$@") || targets=("${ALL[@]}")

case $cmd in
  up)
    run_lanes install "${targets[@]}"
    run_lanes start "${targets[@]}"
    log "all up: ${targets[*]}"
    ;;
  down)
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do "$(fn "${targets[$i]}" stop)" || true; done
    log "stopped: ${targets[*]}"
    ;;
  status)
    rc=0
    for s in "${targets[@]}"; do
      if "$(fn "$s" ready)"; then printf '%-16s up    %s\n' "$s" "$("$(fn "$s" env)")"; else printf '%-16s down\n' "$s"; rc=1; fi
    done
    exit $rc
    ;;
  env)
    # `export` lines, so `eval "$(scripts/services.sh env)"` reaches child processes too.
    for s in "${targets[@]}"; do "$(fn "$s" env)" | sed 's/^/export /'; done
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
