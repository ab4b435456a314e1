#!/usr/bin/env bash
# Make sure the local brokers the end-to-end tests and benchmarks use are running on 127.0.0.1:
# RabbitMQ on 5672 (guest/guest) with the shovel plugin (for the benchmark's comparison).
# Starts what is installed but stopped; installs from Debian's packages what is missing (needs root).
# Idempotent and quick when everything is already up.
#
#   scripts/services.sh
set -euo pipefail

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
