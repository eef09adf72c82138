#!/usr/bin/env bash
# Fan-out benchmark against a fresh local feiyan: builds the release binaries, makes a
# scratch SQLite catalog with one station, starts the server and runs feiyan-bench against
# it. Arguments after the options go to feiyan-bench (e.g. --join-window 10 --client webrtc);
# FEIYAN_BENCH_BIN runs another feiyan-bench binary (to compare two clients).
#
#   ./scripts/bench-fanout.sh [--steer] VIEWERS [SECONDS] [feiyan-bench args...]
#
# --steer (root, Linux, 2+ cores) measures the server as if its viewers were behind a
# network card: on loopback the kernel delivers every datagram to its receiving socket in
# the sender's own context, so the server is charged for the viewers' receive path too.
# With --steer the server runs on core 0, the benchmark client on core 1, and loopback's
# receive processing is steered to core 1 (Receive Packet Steering on `lo`), so the
# server pays for its sends only, as with a real interface. The previous RPS setting of
# `lo` is restored on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

steer=0
if [ "${1:-}" = "--steer" ]; then
  steer=1
  shift
fi
viewers="${1:?usage: $0 [--steer] VIEWERS [SECONDS] [feiyan-bench args...]}"
shift
seconds=20
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  seconds="$1"
  shift
fi

cargo build --release --bins --quiet
bin=target/release
scratch=$(mktemp -d)
rps=/sys/class/net/lo/queues/rx-0/rps_cpus
old_rps=""
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill -INT "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [ -n "$old_rps" ]; then
    echo "$old_rps" > "$rps"
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

server_cmd=()
client_cmd=()
if [ "$steer" = 1 ]; then
  if [ "$(nproc)" -lt 2 ] || [ ! -w "$rps" ]; then
    echo "--steer needs two cores and root (it writes $rps)" >&2
    exit 2
  fi
  old_rps=$(cat "$rps")
  echo 2 > "$rps"
  server_cmd=(taskset -c 0)
  client_cmd=(taskset -c 1)
fi

export FEIYAN_DATABASE_URL="sqlite://$scratch/catalog.db"
station=$($bin/feiyan station add --center 基准中心 --institute 基准所 --name 基准站 --json)
channel=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["channel"])' <<<"$station")
key=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])' <<<"$station")

port_http=${FEIYAN_BENCH_HTTP_PORT:-18080}
port_udp=${FEIYAN_BENCH_UDP_PORT:-18189}
FEIYAN_LISTEN=127.0.0.1:$port_http FEIYAN_UDP_BIND=127.0.0.1:$port_udp \
  FEIYAN_ADVERTISED_IPS=127.0.0.1 \
  "${server_cmd[@]}" $bin/feiyan serve > "$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$port_http/healthz" > /dev/null && break
  sleep 0.1
done

"${client_cmd[@]}" "${FEIYAN_BENCH_BIN:-$bin/feiyan-bench}" \
  --whip "http://127.0.0.1:$port_http/whip/$channel" \
  --whep "http://127.0.0.1:$port_http/whep/$channel" \
  --token "$key" --viewers "$viewers" --duration "$seconds" --server-pid "$server" "$@"
