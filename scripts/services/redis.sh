# Redis from Debian's packages (BullMQ needs Redis >= 6.2; bookworm ships 7.0).
# shellcheck shell=bash

REDIS_PORT=${REDIS_PORT:-6379}

redis_install() {
  command -v redis-server >/dev/null || apt_install redis-server
}

redis_start() {
  if redis_ready; then return 0; fi
  local dir; dir=$(svc_dir redis)
  # noeviction: BullMQ must never lose queue keys to eviction.
  start_daemon redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
    --save 60 1000 --appendonly no --maxmemory-policy noeviction --daemonize no --protected-mode yes
  wait_until 30 redis redis_ready
}

redis_ready() {
  [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_stop() {
  if pid_alive redis; then stop_daemon redis; fi
}

redis_env() {
  printf 'REDIS_URL=redis://127.0.0.1:%s\n' "$REDIS_PORT"
}
