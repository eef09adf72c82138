#!/usr/bin/env bash
# Live interaction benchmark (issue 26): a release feiyan in its own process (loopback,
# SQLite in a temporary folder, recording off, connection caps raised for one client
# address), a live test programme from `feiyan publish`, then feiyan-chat-bench: N
# chat-only SSE watchers, messages and likes at fixed rates; prints a markdown table
# (docs/benchmarks.md). Arguments go to feiyan-chat-bench, e.g. --watchers 2000 --secs 20.
#
#   ./scripts/bench-chat.sh [feiyan-chat-bench args...]
#
# FEIYAN_BIN_DIR=dir runs binaries already built there instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FEIYAN_BIN_DIR:-}" ]; then
  cargo build --release --quiet --bin feiyan --bin feiyan-chat-bench
  FEIYAN_BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
fi
B=$FEIYAN_BIN_DIR
D=$(mktemp -d)
PORT=18480
cat > "$D/feiyan.toml" <<EOT
[http]
listen = "127.0.0.1:$PORT"
max_connections = 20000
max_connections_per_client = 20000
[webrtc]
udp_bind = "127.0.0.1:$((PORT + 1))"
advertised_ips = ["127.0.0.1"]
[catalog]
database_url = "sqlite://$D/feiyan.db"
[recording]
enabled = false
[ingest]
rtmp_listen = "127.0.0.1:$((PORT + 2))"
EOT
ulimit -n 20000
KEY=$("$B/feiyan" --config "$D/feiyan.toml" station add --center 中心 --institute 所 --name 站 --json |
  sed 's/.*"stream_key":"\([^"]*\)".*/\1/')
"$B/feiyan" --config "$D/feiyan.toml" serve > "$D/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER ${PUB:-} 2>/dev/null; rm -rf "$D"' EXIT
sleep 2
"$B/feiyan" --config "$D/feiyan.toml" publish --url "http://127.0.0.1:$PORT/whip/st-1" --key "$KEY" \
  > "$D/publish.log" 2>&1 &
PUB=$!
for _ in $(seq 120); do
  curl -s "http://127.0.0.1:$PORT/api/channels/st-1" | grep -q '"live":true' && break
  sleep 0.5
done
"$B/feiyan-chat-bench" --base "http://127.0.0.1:$PORT" --channel st-1 --server-pid "$SERVER" "$@"
