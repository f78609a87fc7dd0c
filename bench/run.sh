#!/usr/bin/env bash
# Runs the standard tlm_bench scenarios, each against a fresh tlmd, and
# prints one summary line per run.
#
# usage: bench/run.sh [STORAGE...]       (default: memory sqlite)
#   STORAGE is memory, sqlite (a fresh database in a temporary directory
#   for every scenario), or sqlite:PATH (used as is, never deleted).
# env: TLMD (daemon, default build/bin/tlmd), BENCH (default
#   build/bin/tlm_bench), DURATION (seconds a measured run may take,
#   default 10), FILL_TIMEOUT (seconds the 1M-lease fill may take, default 20).
# Exit status: 0 if every scenario succeeded.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
TLMD=${TLMD:-$root/build/bin/tlmd}
BENCH=${BENCH:-$root/build/bin/tlm_bench}
DURATION=${DURATION:-10}
FILL_TIMEOUT=${FILL_TIMEOUT:-20}

for binary in "$TLMD" "$BENCH"; do
  [ -x "$binary" ] || { echo "run.sh: $binary is not built" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/tlm-bench.XXXXXX)
tlmd_pid=
http_port=
tcp_port=
failures=0

# Stops tlmd with SIGTERM. A slow exit is reported; a daemon still running
# after 10 s is killed and counts as a failure.
stop_tlmd() {
  [ -n "$tlmd_pid" ] || return 0
  kill -TERM "$tlmd_pid" 2>/dev/null
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$tlmd_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$tlmd_pid" 2>/dev/null; then
    echo "run.sh: tlmd still running 10 s after SIGTERM; killing it" >&2
    kill -KILL "$tlmd_pid" 2>/dev/null
    failures=$((failures + 1))
  elif ((i >= 20)); then
    echo "run.sh: tlmd took $((i / 10)) s to exit after SIGTERM" >&2
  fi
  wait "$tlmd_pid" 2>/dev/null
  tlmd_pid=
}

trap 'stop_tlmd; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Starts tlmd on ephemeral ports and reads them from its ready line.
start_tlmd() {
  local storage=$1 line='' i
  # Emptied here, not by the redirection below: that one runs in the child,
  # after the loop may already have read the last run's ready line (and
  # connected to its closed ports).
  : >"$tmp/tlmd.out"
  : >"$tmp/tlmd.err"
  "$TLMD" --bind 127.0.0.1 --http-port 0 --tcp-port 0 --storage "$storage" \
    --default-ttl 60000 --max-ttl 86400000 \
    >"$tmp/tlmd.out" 2>"$tmp/tlmd.err" &
  tlmd_pid=$!
  for ((i = 0; i < 100; i++)); do # up to 10 s
    line=$(grep -m1 '^tlmd ready ' "$tmp/tlmd.out") && break
    kill -0 "$tlmd_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $line =~ http=([0-9]+)\ tcp=([0-9]+) ]]; then
    http_port=${BASH_REMATCH[1]}
    tcp_port=${BASH_REMATCH[2]}
    return 0
  fi
  echo "run.sh: tlmd --storage $storage printed no ready line within 10 s" >&2
  tail -n 5 "$tmp/tlmd.err" >&2
  stop_tlmd
  return 1
}

# scenario STORAGE PROTO BENCH_ARGS...: one bench run against a fresh tlmd.
scenario() {
  local storage=$1 proto=$2
  shift 2
  [ "$storage" = "sqlite:$tmp/b.db" ] && rm -f "$tmp"/b.db*
  if ! start_tlmd "$storage"; then
    failures=$((failures + 1))
    return
  fi
  local port=$tcp_port
  [ "$proto" = http ] && port=$http_port
  # The bench bounds itself; the timeout only guards against a bench bug.
  local limit=$((DURATION + FILL_TIMEOUT + 30))
  timeout -k 5 "$limit" "$BENCH" --port "$port" --fill-port "$tcp_port" \
    --proto "$proto" --duration-s "$DURATION" \
    --fill-timeout-s "$FILL_TIMEOUT" "$@" | sed "s|^|storage=${storage%%:*} |"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    failures=$((failures + 1))
    echo "run.sh: last tlmd log lines:" >&2
    tail -n 5 "$tmp/tlmd.err" >&2
  fi
  stop_tlmd
}

storages=("$@")
[ $# -gt 0 ] || storages=(memory sqlite)
pipelined=(--connections 4 --pipeline 256)
for storage in "${storages[@]}"; do
  [ "$storage" = sqlite ] && storage="sqlite:$tmp/b.db"
  scenario "$storage" tcp --action create "${pipelined[@]}" --requests 200000
  scenario "$storage" http --action mixed --connections 16 --requests 100000
  scenario "$storage" http --action create --connections 16 --requests 100000
  scenario "$storage" tcp --action get "${pipelined[@]}" --requests 500000
  if [ "$storage" = memory ]; then
    scenario "$storage" tcp --fill 1000000 --action create \
      "${pipelined[@]}" --requests 200000
  fi
done

[ "$failures" -eq 0 ]
