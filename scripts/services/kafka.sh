# Apache Kafka: one KRaft node (broker + controller in one JVM) for development and tests.
# Sourced by scripts/services.sh after lib.sh; see lib.sh for the NAME_* contract.
#
# The release's jars come from Maven Central through Maven (no tarball download), into
# $FLOTILLA_CACHE/kafka-$KAFKA_VERSION/libs. The broker runs as `java -cp libs/* kafka.Kafka`
# with its data, config and logs under $FLOTILLA_RUN/kafka.
#
# Knobs (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP,
# KAFKA_JVM_OPTS, KAFKA_LOG_LEVEL (root log level, WARN), KAFKA_JAVA (java on PATH, 17+).
# shellcheck shell=bash

# Pinned release. 4.x needs Java 17+ for the broker. kafkajs 2.2.4 works against it (checked:
# admin, LZ4 produce, groups, commits, rebalance, offsets by timestamp).
KAFKA_VERSION=4.1.2
KAFKA_SCALA_VERSION=2.13
# Kafka $KAFKA_VERSION's own log4j2 version (see kafka-server's pom); the slf4j 1.x binding must match it.
KAFKA_LOG4J_VERSION=2.25.3
# Fixed cluster id (base64url of 16 bytes): the data dir is formatted with it once.
KAFKA_CLUSTER_ID=ZmxvdGlsbGEta2Fma2EwMQ

_kafka_home() { printf '%s' "$FLOTILLA_CACHE/kafka-$KAFKA_VERSION"; }
_kafka_port() { printf '%s' "${KAFKA_PORT:-9092}"; }
_kafka_java() { printf '%s' "${KAFKA_JAVA:-java}"; }

# The pom that pins what gets resolved; its checksum is kept in the marker so a change re-resolves.
_kafka_pom() {
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>flotilla.services</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- broker (kafka.Kafka) and storage tool (kafka.tools.StorageTool) -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$KAFKA_SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- logging backend: Kafka logs through slf4j 1.7 and log4j2 -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

_kafka_check_java() {
  local java; java=$(_kafka_java)
  command -v "$java" >/dev/null 2>&1 || die "kafka: '$java' not found (Kafka $KAFKA_VERSION needs Java 17+)"
  local v
  v=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
  if ! [[ $v =~ ^[0-9]+$ ]] || ((v < 17)); then
    die "kafka: Java 17+ needed, '$java' is ${v:-unknown}"
  fi
}

kafka_install() {
  local home; home=$(_kafka_home)
  local pom sum
  pom=$(_kafka_pom)
  sum=$(printf '%s' "$pom" | sha256sum | cut -d' ' -f1)
  if [[ -f $home/.resolved && $(cat "$home/.resolved") == "$sum" ]] &&
    compgen -G "$home/libs/kafka_$KAFKA_SCALA_VERSION-$KAFKA_VERSION.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "kafka: mvn (Maven) is needed to resolve Kafka's jars"
  _kafka_check_java
  log "kafka: resolving Apache Kafka $KAFKA_VERSION from Maven Central"
  mkdir -p "$home"
  printf '%s\n' "$pom" >"$home/pom.xml"
  rm -rf "$home/libs.tmp" "$home/.resolved"
  # Output goes to mvn.log (shown on failure): Debian's Maven 3.8 prints stray colour codes even with -q.
  # shellcheck disable=SC2086 # FLOTILLA_MAVEN_ARGS (e.g. -Dmaven.repo.local=...) is a word list on purpose
  if ! mvn -B -ntp -Dstyle.color=never -f "$home/pom.xml" ${FLOTILLA_MAVEN_ARGS:-} \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$home/libs.tmp" \
    >"$home/mvn.log" 2>&1 </dev/null; then
    grep -E '^\[(ERROR|WARNING)\]' "$home/mvn.log" | head -n 20 >&2
    rm -rf "$home/libs.tmp"
    die "kafka: Maven could not resolve Kafka $KAFKA_VERSION (full output: $home/mvn.log)"
  fi
  rm -rf "$home/libs"
  mv "$home/libs.tmp" "$home/libs"
  printf '%s\n' "$sum" >"$home/.resolved"
}

_kafka_write_config() {
  local dir=$1 port; port=$(_kafka_port)
  local cport=${KAFKA_CONTROLLER_PORT:-9093}
  cat >"$dir/server.properties" <<EOF
# Written by scripts/services/kafka.sh on each start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data

# One node, sized for tests on a small machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# After an unclean stop (kill -9) the node waits out its old registration's session before it
# serves: 9 s by default, 4 s here.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000

# Retention: a day or 256 MiB per partition, whichever first; small segments so it applies.
log.retention.hours=24
log.retention.bytes=268435456
log.segment.bytes=67108864
log.retention.check.interval.ms=300000
EOF
  cat >"$dir/log4j2.properties" <<EOF
# Written by scripts/services/kafka.sh. server.log: rolling, ${KAFKA_LOG_LEVEL:-WARN} and up plus
# the "Kafka Server started" line; errors also go to stdout ($dir/kafka.log).
status = warn
name = flotilla-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.filePattern = $dir/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
appender.out.filter.level.type = ThresholdFilter
appender.out.filter.level.level = ERROR
rootLogger.level = ${KAFKA_LOG_LEVEL:-WARN}
rootLogger.appenderRef.file.ref = file
rootLogger.appenderRef.out.ref = out
# "[KafkaRaftServer nodeId=1] Kafka Server started"
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
logger.kafka.name = kafka.Kafka
logger.kafka.level = INFO
EOF
}

kafka_start() {
  local dir; dir=$(svc_dir kafka)
  local home; home=$(_kafka_home)
  local port; port=$(_kafka_port)
  if pid_alive kafka; then
    _kafka_wait_ready # running already, or still starting
    return
  fi
  rm -f "$dir/pid" # stale: the process died
  [[ -f $home/.resolved ]] || kafka_install
  _kafka_check_java
  local p
  for p in "$port" "${KAFKA_CONTROLLER_PORT:-9093}"; do
    if port_open 127.0.0.1 "$p"; then die "kafka: port $p is already in use by something not started here"; fi
  done
  _kafka_write_config "$dir"
  local java; java=$(_kafka_java)
  local -a jvm
  # shellcheck disable=SC2206 # word lists on purpose
  jvm=(${KAFKA_HEAP:--Xms256m -Xmx512m}
    ${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}
    "-Dlog4j2.configurationFile=$dir/log4j2.properties" -Dlog4j2.shutdownHookEnabled=false)
  if [[ ! -f $dir/data/meta.properties ]]; then
    log "kafka: formatting storage in $dir/data"
    mkdir -p "$dir/data"
    "$java" "${jvm[@]}" -cp "$home/libs/*" kafka.tools.StorageTool format \
      -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" --ignore-formatted >>"$dir/kafka.log" 2>&1 ||
      die "kafka: formatting storage failed, see $dir/kafka.log"
  fi
  log "kafka: starting $KAFKA_VERSION on 127.0.0.1:$port"
  start_daemon kafka "$java" "${jvm[@]}" -cp "$home/libs/*" kafka.Kafka "$dir/server.properties"
  _kafka_wait_ready
}

# Ready in ~3-5 s (JVM start, KRaft election, broker unfenced); ~6 s after an unclean stop.
_kafka_wait_ready() {
  local dir="$FLOTILLA_RUN/kafka"
  if wait_until "${KAFKA_START_TIMEOUT:-90}" kafka _kafka_ready_or_gone && kafka_ready; then
    return 0
  fi
  pid_alive kafka || log "kafka: the broker exited; last lines of $dir/kafka.log:"
  tail -n 20 "$dir/kafka.log" >&2 2>/dev/null
  return 1
}
_kafka_ready_or_gone() { kafka_ready || ! pid_alive kafka; }

# One Kafka protocol round trip: ApiVersions v0 (api key 18) with correlation id 42, client id
# "ready"; the answer must echo the correlation id with error code 0. The broker only serves its
# listener once it has caught up with the metadata log and is unfenced, so this means "usable".
_kafka_api_versions() {
  local port=$1 resp
  resp=$(
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x05ready' >&3
    timeout 2 head -c 10 <&3 | od -An -tx1 | tr -d ' \n'
  ) 2>/dev/null
  # bytes 4..9: correlation id 0000002a, error code 0000
  [[ ${resp:8:12} == 0000002a0000 ]]
}

kafka_ready() {
  pid_alive kafka || return 1
  port_open 127.0.0.1 "$(_kafka_port)" || return 1
  _kafka_api_versions "$(_kafka_port)"
}

kafka_stop() {
  if pid_alive kafka; then log "kafka: stopping"; fi
  stop_daemon kafka
}

kafka_env() {
  printf 'KAFKA_BROKERS=127.0.0.1:%s\n' "$(_kafka_port)"
}
