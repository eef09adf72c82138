#!/usr/bin/env bash
# Cascade benchmark: three `feiyan serve` nodes on loopback sharing one fresh PostgreSQL
# database (node A the origin, B and C edges), the release binaries.
#
#   ./scripts/bench-cascade.sh N [SECONDS]       # N viewers per edge (default 200), 20 s
#
# 1. direct:  feiyan-bench, 2N viewers on A                      (A's CPU)
# 2. cascade: feiyan-bench, N viewers on B + N on C, publisher on A (A's, B's, C's CPU)
# 3. feiyan-cascade-bench A B: first frame on an edge's first viewer (pull starting /
#    running), the latency an edge adds per picture, and first frame of a 180p viewer on
#    an edge (a second channel with a ladder on A; its rendition pull starting / running).
# Server CPU is each process's user + system time from /proc/PID/stat (feiyan-bench's
# steady window for A, the whole run for B and C). PostgreSQL: FEIYAN_TEST_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test), as the tests use it.
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-200}"
seconds="${2:-20}"
admin=${FEIYAN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
db=feiyan_bench_cascade_$$
dburl="${admin%/*}/$db"

cargo build --release --bins --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release")
scratch=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

psql -q "$admin" -c "CREATE DATABASE $db"
export FEIYAN_DATABASE_URL="$dburl"
station=$($bin/feiyan station add --center 基准中心 --institute 基准所 --name 级联站 --json)
channel=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["channel"])' <<<"$station")
key=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])' <<<"$station")
# A second channel whose origin encodes a 180p rung, for the rendition first frames.
station2=$($bin/feiyan station add --center 基准中心 --institute 基准所 --name 码率站 --json)
channel2=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["channel"])' <<<"$station2")
key2=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])' <<<"$station2")
export FEIYAN_CLUSTER_SECRET=bench-cascade-secret-0123456789abcdef

cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

start_node() { # name http-port udp-port
  cat > "$scratch/$1.toml" <<TOML
[http]
listen = "127.0.0.1:$2"
whep_posts_per_sec = 100000.0
whep_post_burst = 100000
max_connections_per_client = 100000
[webrtc]
udp_bind = "127.0.0.1:$3"
advertised_ips = ["127.0.0.1"]
[ingest]
rtmp_listen = "127.0.0.1:0"
[relay]
max_unconnected_per_channel = 5000
max_unconnected_per_client = 5000
[catalog]
database_url = "$dburl"
[cluster]
node_url = "http://127.0.0.1:$2"
heartbeat_secs = 1
gone_after_secs = 5
[ingest.channels."$channel2"]
renditions = [{ name = "180p", height = 180, video_kbps = 300 }]
TOML
  mkdir -p "$scratch/$1"
  (cd "$scratch/$1" && exec "$bin/feiyan" serve --config "$scratch/$1.toml") > "$scratch/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$2/healthz" > /dev/null && return 0
    sleep 0.1
  done
  echo "node $1 did not come up; its log:" >&2
  cat "$scratch/$1.log" >&2
  exit 1
}
start_node a 18280 18290
start_node b 18281 18291
start_node c 18282 18292
a=http://127.0.0.1:18280 b=http://127.0.0.1:18281 c=http://127.0.0.1:18282
pid_a=${pids[0]} pid_b=${pids[1]} pid_c=${pids[2]}

echo "== direct: $((2 * n)) viewers on the origin"
$bin/feiyan-bench --whip "$a/whip/$channel" --whep "$a/whep/$channel" --token "$key" \
  --viewers $((2 * n)) --duration "$seconds" --server-pid "$pid_a" | tee "$scratch/direct.txt"
sleep 8   # the edges' pulls (none here) and the viewers' rows settle

echo "== cascade: $n viewers on each of 2 edges, the publisher on the origin"
b0=$(cpu_ticks "$pid_b") c0=$(cpu_ticks "$pid_c") t0=$(date +%s.%N)
$bin/feiyan-bench --whip "$a/whip/$channel" --whep "$b/whep/$channel" --whep "$c/whep/$channel" \
  --token "$key" --viewers $((2 * n)) --duration "$seconds" --server-pid "$pid_a" | tee "$scratch/cascade.txt"
b1=$(cpu_ticks "$pid_b") c1=$(cpu_ticks "$pid_c") t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
python3 - "$b0" "$b1" "$c0" "$c1" "$t0" "$t1" "$hz" "$n" <<'PY'
import sys
b0, b1, c0, c1, t0, t1, hz, n = map(float, sys.argv[1:])
secs = t1 - t0
for name, a, z in (("B", b0, b1), ("C", c0, c1)):
    rate = (z - a) / hz * 1000 / secs
    print(f"edge {name}: {rate:.1f} core-ms/s over the whole run ({secs:.0f} s, warm-up and joins included), "
          f"{rate / n:.2f} core-ms per viewer-second at {n:.0f} viewers")
PY
for f in direct cascade; do
  python3 - "$f" "$scratch/$f.txt" <<'PY'
import json, sys
rep = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
s = rep["server"]
per = s["cpu_core_ms_per_viewer_s"] or 0.0
v = s["receiving_viewers_in_window"] or 0
print(f"{sys.argv[1]}: origin {per:.3f} core-ms per viewer-second x {v} viewers = {per * v:.1f} core-ms/s; "
      f"connected {rep['viewers_connected']}/{rep['viewers_requested']}, loss {rep['loss_pct']['total']} %, "
      f"first frame median {rep['first_frame_ms']['median']} ms")
PY
done
sleep 8

echo "== first frame on an edge's first viewer, latency per hop"
$bin/feiyan-cascade-bench "$a" "$b" "$channel" "$key" 5 20 "$channel2" "$key2" 180p
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
