#!/usr/bin/env bash
# Fan-out benchmark against a fresh local feiyan: builds the release binaries, makes a
# scratch SQLite catalog with one station, starts the server and runs feiyan-bench against
# it. Arguments after the options go to feiyan-bench (e.g. --join-window 10 --client webrtc);
# FEIYAN_BENCH_BIN runs another feiyan-bench binary (to compare two clients) and
# FEIYAN_SERVER_BIN another feiyan binary (to compare two builds of the server).
#
#   ./scripts/bench-fanout.sh [--steer] [--shards N] VIEWERS [SECONDS] [feiyan-bench args...]
#
# --shards N runs the server with `[webrtc] shards = N` (relay engine shards; default 1).
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

# Options come first: every argument after VIEWERS [SECONDS] goes to feiyan-bench.
steer=0
shards=1
while [ $# -gt 0 ]; do
  case "$1" in
    --steer) steer=1; shift ;;
    --shards) shards="${2:?--shards needs a number}"; shift 2 ;;
    *) break ;;
  esac
done
viewers="${1:?usage: $0 [--steer] [--shards N] VIEWERS [SECONDS] [feiyan-bench args...]}"
shift
seconds=20
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  seconds="$1"
  shift
fi

cargo build --release --bins --quiet
bin=${CARGO_TARGET_DIR:-target}/release
scratch=$(mktemp -d)
rps=/sys/class/net/lo/queues/rx-0/rps_cpus
old_rps=""
server=""
cleanup() {
  if [ -n "$old_rps" ]; then
    echo "$old_rps" > "$rps" || echo "could not restore $rps to $old_rps" >&2
  fi
  if [ -n "$server" ]; then
    kill -INT "$server" 2>/dev/null || true
    # A graceful stop closes every session; give it 10 s, then stop it hard.
    for _ in $(seq 100); do
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

server_cmd=()
client_cmd=()
if [ "$steer" = 1 ]; then
  if ! taskset -c 0,1 true 2>/dev/null || [ ! -w "$rps" ]; then
    echo "--steer needs cores 0 and 1 and root (it writes $rps)" >&2
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

# The built-in defaults, with RTMP on a free port: a server already running here
# (./scripts/run.sh) keeps 1935. Every viewer comes from 127.0.0.1, so the per-address
# limits on WHEP (meant for one NAT's residents) are lifted: the audience stands for many
# addresses.
cat > "$scratch/bench.toml" <<TOML
[webrtc]
shards = $shards

[ingest]
rtmp_listen = "127.0.0.1:0"

[http]
whep_posts_per_sec = 100000.0
whep_post_burst = 100000

[relay]
max_unconnected_per_channel = 5000
max_unconnected_per_client = 5000
TOML

port_http=${FEIYAN_BENCH_HTTP_PORT:-18080}
port_udp=${FEIYAN_BENCH_UDP_PORT:-18189}
FEIYAN_LISTEN=127.0.0.1:$port_http FEIYAN_UDP_BIND=127.0.0.1:$port_udp \
  FEIYAN_ADVERTISED_IPS=127.0.0.1 \
  "${server_cmd[@]}" "${FEIYAN_SERVER_BIN:-$bin/feiyan}" serve --config "$scratch/bench.toml" > "$scratch/server.log" 2>&1 &
server=$!
up=0
for _ in $(seq 100); do
  kill -0 "$server" 2>/dev/null || break
  if curl -fs "http://127.0.0.1:$port_http/healthz" > /dev/null; then
    up=1
    break
  fi
  sleep 0.1
done
if [ "$up" != 1 ]; then
  echo "the server did not come up on 127.0.0.1:$port_http; its log:" >&2
  cat "$scratch/server.log" >&2
  exit 1
fi

"${client_cmd[@]}" "${FEIYAN_BENCH_BIN:-$bin/feiyan-bench}" \
  --whip "http://127.0.0.1:$port_http/whip/$channel" \
  --whep "http://127.0.0.1:$port_http/whep/$channel" \
  --token "$key" --viewers "$viewers" --duration "$seconds" --server-pid "$server" "$@"
