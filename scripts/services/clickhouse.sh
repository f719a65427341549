# ClickHouse from Debian's packages (bookworm ships 18.16; see the README for what that
# limits). Runs with a config of our own under the run folder, not the system one.
# shellcheck shell=bash

CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-8123}
CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-9000}
# Tenant-scoped users for the tenancy tests; docker-compose.yml mounts the same file.
CLICKHOUSE_TENANT_PROBES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/clickhouse-tenant-probes.xml"

clickhouse_install() {
  command -v clickhouse-server >/dev/null || apt_install clickhouse-server
}

clickhouse_write_config() {
  local dir=$1
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$dir/clickhouse-server.log</log>
    <errorlog>$dir/clickhouse-server.err.log</errorlog>
    <size>50M</size>
    <count>2</count>
  </logger>
  <http_port>$CLICKHOUSE_HTTP_PORT</http_port>
  <tcp_port>$CLICKHOUSE_TCP_PORT</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
XML
  cat >"$dir/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
XML
  # The server merges users.d/*.xml into users.xml; rebuilt on every start so no stale file stays.
  rm -rf "$dir/users.d"
  mkdir -p "$dir/users.d"
  cp "$CLICKHOUSE_TENANT_PROBES" "$dir/users.d/"
}

clickhouse_start() {
  if clickhouse_ready; then return 0; fi
  local dir; dir=$(svc_dir clickhouse)
  clickhouse_write_config "$dir"
  start_daemon clickhouse clickhouse-server --config-file="$dir/config.xml"
  wait_until 60 clickhouse clickhouse_ready
}

# /ping answers before tables are loaded; a real query proves the server works.
clickhouse_ready() {
  [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$CLICKHOUSE_HTTP_PORT/?query=SELECT%201" 2>/dev/null) == 1 ]]
}

clickhouse_stop() {
  if pid_alive clickhouse; then stop_daemon clickhouse; fi
}

clickhouse_env() {
  printf 'CLICKHOUSE_URL=http://127.0.0.1:%s\n' "$CLICKHOUSE_HTTP_PORT"
}
