# Shared helpers for scripts/services.sh and the per-service files beside this one.
# Each service file (e.g. kafka.sh) defines, for its NAME:
#   NAME_install  install what is missing (idempotent; downloads go to $FLOTILLA_CACHE)
#   NAME_start    start it in the background under $FLOTILLA_RUN/NAME (idempotent)
#   NAME_ready    exit 0 when the service really answers (a protocol round trip, not just a port)
#   NAME_stop     stop what NAME_start started
#   NAME_env      print KEY=value connection lines
# shellcheck shell=bash

# As root the data lives outside /root, because PostgreSQL runs as its own system user and
# must be able to reach its data folder.
if ((EUID == 0)); then FLOTILLA_HOME=${FLOTILLA_HOME:-/var/lib/flotilla}; else FLOTILLA_HOME=${FLOTILLA_HOME:-$HOME/.flotilla}; fi
# Downloads and builds: kept across checkouts so a second `up` is fast.
FLOTILLA_CACHE=${FLOTILLA_CACHE:-$FLOTILLA_HOME/cache}
# Data, logs and pid files of running services.
FLOTILLA_RUN=${FLOTILLA_RUN:-$FLOTILLA_HOME/run}
mkdir -p "$FLOTILLA_CACHE" "$FLOTILLA_RUN"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what did not answer within ${timeout}s"
      return 1
    fi
    sleep 0.5
  done
}

svc_dir() { local d="$FLOTILLA_RUN/$1"; mkdir -p "$d"; printf '%s' "$d"; }

# pid_alive NAME: the process recorded in NAME's pid file is running, and it is the one this
# script started: a pid file left by a machine that was stopped or snapshotted can name a pid
# that now belongs to another process, so the pid file also records the boot and the start
# time of its process. A zombie (killed, not yet reaped by PID 1 on some machines) counts as dead.
pid_alive() {
  local f="$FLOTILLA_RUN/$1/pid" pid
  [[ -f $f && -f $f.id ]] || return 1
  pid=$(cat "$f")
  proc_alive "$pid" && [[ $(proc_identity "$pid") == "$(cat "$f.id")" ]]
}

proc_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}') || return 1
  [[ -n $state && $state != Z ]]
}

# proc_identity PID: the boot id and the process's start time (clock ticks since boot), which
# together name one process for the machine's lifetime; exec does not change them.
proc_identity() {
  local start
  start=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}') || return 1
  printf '%s %s' "$(cat /proc/sys/kernel/random/boot_id)" "$start"
}

# start_daemon NAME CMD...: run CMD detached (own session, survives this shell), log to
# $FLOTILLA_RUN/NAME/NAME.log, pid to $FLOTILLA_RUN/NAME/pid (identity to pid.id).
start_daemon() {
  local name=$1; shift
  local dir; dir=$(svc_dir "$name")
  if pid_alive "$name"; then return 0; fi
  setsid nohup "$@" >>"$dir/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/pid"
  proc_identity "$pid" >"$dir/pid.id"
}

# stop_daemon NAME [SIGNAL]: signal the recorded process group, wait up to 30 s, then kill it.
stop_daemon() {
  local name=$1 sig=${2:-TERM} f="$FLOTILLA_RUN/$1/pid"
  [[ -f $f ]] || return 0
  local pid; pid=$(cat "$f")
  if pid_alive "$name"; then
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null
    local i
    for ((i = 0; i < 60; i++)); do proc_alive "$pid" || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f" "$f.id"
}

# apt_install PKG...: install Debian packages that are missing (non-interactive).
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  log "installing from Debian: ${missing[*]}"
  local sudo=; ((EUID == 0)) || sudo=sudo
  if [[ ! -f $FLOTILLA_CACHE/.apt-updated ]] || [[ -n $(find "$FLOTILLA_CACHE/.apt-updated" -mmin +720) ]]; then
    $sudo apt-get update -qq && touch "$FLOTILLA_CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
