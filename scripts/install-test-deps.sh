#!/usr/bin/env bash
# Installs the real servers the tests run against: Mosquitto, RabbitMQ (with
# its MQTT plugin, shipped in the package), libcoap's CoAP server and
# client, and PostgreSQL (the C2 store's tests run its initdb and pg_ctl);
# headless Chromium for the C2 web interface's browser tests (c2/web);
# and protoc with the well-known types, which `make proto-check`
# (scripts/gen-proto.sh) regenerates the C2 API code with; and Prometheus,
# whose promtool checks the alert rules in deploy/prometheus and whose
# server scrapes a running C2 in c2/metrics' tests.
# The tests start and stop their own instances on free ports; this script
# only makes the binaries available. Idempotent.
set -euo pipefail

need=()
command -v mosquitto >/dev/null || need+=(mosquitto mosquitto-clients)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v coap-server-notls >/dev/null || need+=(libcoap3-bin)
command -v openssl >/dev/null || need+=(openssl)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
# Keep package scripts from starting system-wide instances: the tests start
# their own, on ports of their choosing.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-test-deps: installed ${need[*]}"
