#!/usr/bin/env bash
# Installs the Debian 12 packages that the cloud-backend integration tests
# run as real servers on loopback (tests/servers/): InfluxDB 1.x, Redis and
# PostgreSQL 15 (the postgres storage backend's tests).
# Uses sudo when not root; installs only what is missing.
#
# The packages' maintainer scripts try to start their system services
# (influxd on :8086/:8088, redis-server on :6379, PostgreSQL's main cluster
# on :5432).  The tests never use those
# services (they start their own servers on free ports in temp dirs), and on
# machines without systemd starting them may fail or leave daemons behind.
# So during the install a policy-rc.d that answers 101 ("action forbidden")
# is put in place, and the previous one (if any) is restored afterwards.
set -euo pipefail

packages=(influxdb influxdb-client redis-server redis-tools postgresql-15)

. "$(dirname "$0")/apt-common.sh"
find_missing "${packages[@]}"
[ ${#missing[@]} -eq 0 ] && exit 0

policy=/usr/sbin/policy-rc.d
backup=""
restore_policy() {
  if [ -n "$backup" ]; then
    $sudo mv -f "$backup" "$policy"
  else
    $sudo rm -f "$policy"
  fi
}
if [ -e "$policy" ]; then
  backup="$($sudo mktemp /usr/sbin/policy-rc.d.tlm-backup.XXXXXX)"
  $sudo cp -p "$policy" "$backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# temporary, from tlmd scripts/install-test-servers.sh\nexit 101\n' \
  | $sudo tee "$policy" >/dev/null
$sudo chmod 755 "$policy"

echo "installing: ${missing[*]}"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Belt and braces: if a maintainer script started a system daemon anyway
# (policy-rc.d ignored), stop exactly that daemon through its pid file.
for pidfile in /run/redis/redis-server.pid /var/run/redis/redis-server.pid \
               /run/influxdb/influxd.pid /var/run/influxdb/influxd.pid \
               /var/lib/influxdb/influxd.pid /run/postgresql/15-main.pid; do
  if [ -s "$pidfile" ]; then
    pid="$($sudo cat "$pidfile" 2>/dev/null || true)"
    case "$pid" in
      ''|*[!0-9]*) continue ;;
    esac
    if $sudo kill -0 "$pid" 2>/dev/null; then
      echo "stopping system daemon started by the install (pid $pid from $pidfile)"
      $sudo kill -TERM "$pid" 2>/dev/null || true
    fi
  fi
done

for p in "${packages[@]}"; do
  dpkg-query -W -f='${Package} ${Version}\n' "$p"
done
