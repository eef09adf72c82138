#!/usr/bin/env bash
# The combined figure of issue 26: WebRTC viewers of one channel with and without a busy
# chat beside them. Two runs against a fresh release `feiyan serve` each (loopback, SQLite
# in a temporary folder, recording off, connection caps raised for one client address):
#   1. feiyan-bench: VIEWERS WebRTC viewers (its own WHIP publisher) for SECONDS;
#   2. the same, and feiyan-chat-bench beside it once the channel is live: WATCHERS
#      chat-only SSE watchers, 50 messages/s and 500 likes/s (its defaults).
# Prints both runs' output: the viewers' delivery and loss, first frame, and the server's
# CPU per viewer-second over feiyan-bench's steady window (which includes the chat's CPU in
# run 2), then the chat's latency and memory per watcher.
#
#   ./scripts/bench-chat-fanout.sh [VIEWERS [WATCHERS [SECONDS]]]    # default 200 5000 60
#
# FEIYAN_BIN_DIR=dir runs binaries already built there instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${1:-200}
watchers=${2:-5000}
seconds=${3:-60}
# The chat posts over most of feiyan-bench's steady window (it starts after the watchers
# are connected, ~10 s after the channel is live).
chat_secs=$((seconds - 15))
if [ -z "${FEIYAN_BIN_DIR:-}" ]; then
  cargo build --release --quiet --bin feiyan --bin feiyan-bench --bin feiyan-chat-bench
  FEIYAN_BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
fi
B=$FEIYAN_BIN_DIR
ulimit -n 20000
PORT=${FEIYAN_BENCH_HTTP_PORT:-18580}

server=""
D=""
stop_server() {
  if [ -n "$server" ]; then
    kill -INT "$server" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
  if [ -n "$D" ]; then rm -rf "$D"; D=""; fi
}
trap stop_server EXIT

run() {
  local with_chat=$1
  D=$(mktemp -d)
  cat > "$D/feiyan.toml" <<EOT
[http]
listen = "127.0.0.1:$PORT"
max_connections = 20000
max_connections_per_client = 20000
whep_posts_per_sec = 100000.0
whep_post_burst = 100000
[webrtc]
udp_bind = "127.0.0.1:$((PORT + 1))"
advertised_ips = ["127.0.0.1"]
[relay]
max_unconnected_per_channel = 5000
max_unconnected_per_client = 5000
[catalog]
database_url = "sqlite://$D/feiyan.db"
[recording]
enabled = false
[ingest]
rtmp_listen = "127.0.0.1:$((PORT + 2))"
EOT
  local station channel key
  station=$("$B/feiyan" --config "$D/feiyan.toml" station add --center 基准中心 --institute 基准所 --name 基准站 --json)
  channel=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["channel"])' <<<"$station")
  key=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])' <<<"$station")
  "$B/feiyan" --config "$D/feiyan.toml" serve > "$D/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" > /dev/null && break
    sleep 0.1
  done
  echo "=== $viewers WebRTC viewers, ${seconds} s$([ "$with_chat" = 1 ] && echo ", with $watchers chat watchers, 50 messages/s, 500 likes/s" || echo ", no chat") ==="
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$B/feiyan-bench" --whip "http://127.0.0.1:$PORT/whip/$channel" \
    --whep "http://127.0.0.1:$PORT/whep/$channel" --token "$key" \
    --viewers "$viewers" --duration "$seconds" --server-pid "$server" > "$D/fanout.out" 2>&1 &
  local fanout=$!
  local chat=""
  if [ "$with_chat" = 1 ]; then
    for _ in $(seq 200); do
      curl -s "http://127.0.0.1:$PORT/api/channels/$channel" | grep -q '"live":true' && break
      sleep 0.1
    done
    "$B/feiyan-chat-bench" --base "http://127.0.0.1:$PORT" --channel "$channel" \
      --watchers "$watchers" --secs "$chat_secs" --server-pid "$server" > "$D/chat.out" 2>&1 &
    chat=$!
  fi
  wait "$fanout" || echo "feiyan-bench failed"
  cat "$D/fanout.out"
  if [ -n "$chat" ]; then
    wait "$chat" || echo "feiyan-chat-bench failed"
    cat "$D/chat.out"
  fi
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  stop_server
}

run 0
run 1
