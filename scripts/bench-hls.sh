#!/usr/bin/env bash
# Live HLS benchmarks against a fresh local feiyan: makes a scratch SQLite catalog with one
# station, starts `feiyan serve` (HTTP 18080, RTMP 19350) and runs feiyan-hls-bench.
#
#   ./scripts/bench-hls.sh load [feiyan-hls-bench load args...]     # e.g. --plain 2000 --ll 2000
#   ./scripts/bench-hls.sh latency [feiyan-hls-bench latency args...]
#
# load: the ffmpeg CLI publishes media/generated/h264-baseline-aac.mp4 (640x360 30 fps H.264
# constrained baseline 800 kbit/s, 2 s GOP, AAC 96 kbit/s; scripts/make-test-media.sh) in a
# loop over RTMP (no B-frames: passed through, so the server's baseline CPU is small), and
# the players join once the channel has its first segment. latency: the bench publishes its
# own clock. FEIYAN_BIN_DIR=dir uses binaries already built there instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:?usage: $0 load|latency [feiyan-hls-bench args...]}"
shift

if [ -z "${FEIYAN_BIN_DIR:-}" ]; then
  cargo build --release --bins --quiet
fi
bin=${FEIYAN_BIN_DIR:-target/release}
scratch=$(mktemp -d)
server=""
publisher=""
cleanup() {
  if [ -n "$publisher" ]; then
    kill "$publisher" 2>/dev/null || true
    wait "$publisher" 2>/dev/null || true
  fi
  if [ -n "$server" ]; then
    kill -INT "$server" 2>/dev/null || true
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

export FEIYAN_DATABASE_URL="sqlite://$scratch/catalog.db"
station=$($bin/feiyan station add --center 基准中心 --institute 基准所 --name 基准站 --json)
channel=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["channel"])' <<<"$station")
key=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])' <<<"$station")

port_http=${FEIYAN_BENCH_HTTP_PORT:-18080}
port_rtmp=${FEIYAN_BENCH_RTMP_PORT:-19350}
cat > "$scratch/bench.toml" <<TOML
[ingest]
rtmp_listen = "127.0.0.1:$port_rtmp"
TOML
ulimit -n 65536 2>/dev/null || true
FEIYAN_LISTEN=127.0.0.1:$port_http FEIYAN_UDP_BIND=127.0.0.1:0 FEIYAN_ADVERTISED_IPS=127.0.0.1 \
  "${FEIYAN_SERVER_BIN:-$bin/feiyan}" serve --config "$scratch/bench.toml" > "$scratch/server.log" 2>&1 &
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
rtmp="rtmp://127.0.0.1:$port_rtmp/live/$channel?key=$key"
echo "channel $channel, server pid $server" >&2

case "$mode" in
  load)
    clip=$(./scripts/make-test-media.sh media/generated 6)/h264-baseline-aac.mp4
    ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$clip" -c copy -f flv "$rtmp" &
    publisher=$!
    # The first segment (the bench then waits for nothing more).
    for _ in $(seq 150); do
      if curl -fsL "http://127.0.0.1:$port_http/hls/$channel/index.m3u8" 2>/dev/null | grep -q EXTINF; then
        break
      fi
      sleep 0.2
    done
    "$bin/feiyan-hls-bench" load --server "127.0.0.1:$port_http" --channel "$channel" \
      --server-pid "$server" "$@"
    ;;
  latency)
    "$bin/feiyan-hls-bench" latency --server "127.0.0.1:$port_http" --channel "$channel" \
      --rtmp "$rtmp" "$@"
    ;;
  *)
    echo "mode must be load or latency" >&2
    exit 2
    ;;
esac
