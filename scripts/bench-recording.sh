#!/usr/bin/env bash
# Recording cost against a fresh local feiyan: N stations each get an RTMP lecture at once
# (the ffmpeg CLI publishing a SECS-long 640x360 30 fps H.264 baseline + AAC clip in real
# time; no B-frames, so the server passes it through as it comes). When they end, the
# script reads the CPU time of the recording thread (fy-rec: every file write of every
# channel) and compares the recordings' bytes on disk with the clip's media bytes
# (ffprobe's packet sizes).
#
#   ./scripts/bench-recording.sh [CHANNELS] [SECS]      # default 4 channels, 60 s
#
# FEIYAN_BIN_DIR=dir uses binaries already built there instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
channels="${1:-4}"
secs="${2:-60}"

if [ -z "${FEIYAN_BIN_DIR:-}" ]; then
  cargo build --release --bins --quiet
fi
bin=${FEIYAN_BIN_DIR:-target/release}
scratch=$(mktemp -d)
server=""
pushes=()
cleanup() {
  for p in "${pushes[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$server" ]; then
    kill -INT "$server" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

clip="$scratch/lecture.mp4"
ffmpeg -hide_banner -nostdin -loglevel error -y -f lavfi -i "testsrc=size=640x360:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100" -t "$secs" -pix_fmt yuv420p \
  -c:v libx264 -preset veryfast -profile:v baseline -bf 0 -g 60 -b:v 1500k -maxrate 1500k -bufsize 3000k \
  -c:a aac -b:a 96k "$clip"
media_bytes=$(ffprobe -v error -show_entries packet=size -of csv=p=0 "$clip" | awk '{s+=$1} END {print s}')

export FEIYAN_DATABASE_URL="sqlite://$scratch/catalog.db"
keys=()
names=()
for i in $(seq "$channels"); do
  station=$($bin/feiyan station add --center 基准中心 --institute 基准所 --name "基准站$i" --json)
  names+=("$(python3 -c 'import json,sys;print(json.load(sys.stdin)["channel"])' <<<"$station")")
  keys+=("$(python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])' <<<"$station")")
done
port_http=${FEIYAN_BENCH_HTTP_PORT:-18080}
port_rtmp=${FEIYAN_BENCH_RTMP_PORT:-19350}
cat > "$scratch/bench.toml" <<TOML
[ingest]
rtmp_listen = "127.0.0.1:$port_rtmp"
[recording]
dir = "$scratch/recordings"
TOML
FEIYAN_LISTEN=127.0.0.1:$port_http FEIYAN_UDP_BIND=127.0.0.1:0 FEIYAN_ADVERTISED_IPS=127.0.0.1 \
  "$bin/feiyan" serve --config "$scratch/bench.toml" > "$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port_http/healthz" > /dev/null && break
  sleep 0.1
done

# utime + stime (clock ticks) of the server's threads named $1.
thread_ticks() {
  local total=0
  for t in /proc/"$server"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = "$1" ]; then
      total=$((total + $(awk '{print $14 + $15}' "$t/stat")))
    fi
  done
  echo "$total"
}
process_ticks() { awk '{print $14 + $15}' /proc/"$server"/stat; }

before_proc=$(process_ticks)
for i in $(seq 0 $((channels - 1))); do
  ffmpeg -hide_banner -nostdin -loglevel error -re -i "$clip" -c copy -f flv \
    "rtmp://127.0.0.1:$port_rtmp/live/${names[$i]}?key=${keys[$i]}" &
  pushes+=($!)
done
for p in "${pushes[@]}"; do wait "$p"; done
pushes=()
# Rows come when each session ends; the last segments are written by then.
for _ in $(seq 100); do
  n=$(for c in "${names[@]}"; do curl -fs "http://127.0.0.1:$port_http/api/recordings?station=$c"; done \
      | python3 -c 'import sys,json; print(sum(len(json.loads(l)) for l in sys.stdin.read().replace("][","]\n[").splitlines() if l.strip()))')
  [ "$n" -ge "$channels" ] && break
  sleep 0.2
done
rec_ticks=$(thread_ticks fy-rec)
proc_ticks=$(( $(process_ticks) - before_proc ))
hz=$(getconf CLK_TCK)
recorded=$(find "$scratch/recordings" -name 'seg-*.m4s' -o -name 'init-*.mp4' | xargs stat -c %s | awk '{s+=$1} END {print s}')
python3 - "$channels" "$secs" "$rec_ticks" "$proc_ticks" "$hz" "$media_bytes" "$recorded" <<'PY'
import sys
ch, secs, rec, proc, hz, media, recorded = map(float, sys.argv[1:])
print(f"channels {ch:.0f}, {secs:.0f} s each, clip media {media/1e6:.2f} MB per channel")
print(f"recording thread (fy-rec): {rec/hz:.3f} core-s = {100*rec/hz/(secs*ch):.3f} % of a core per channel")
print(f"whole server (RTMP ingest, live HLS, recording): {100*proc/hz/(secs*ch):.2f} % of a core per channel")
print(f"disk: {recorded/1e6:.2f} MB recorded for {ch*media/1e6:.2f} MB of media = {100*(recorded/(ch*media)-1):+.2f} %")
PY
