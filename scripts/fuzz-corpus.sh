#!/usr/bin/env bash
# Makes the fuzz seeds committed under tests/fuzz-corpus/ (small: under 1 MB in all).
#   flv/    FLV files from the ffmpeg CLI (testsrc + sine; H.264 high with B-frames and
#           baseline, AAC), and chunks of them cut at tag boundaries
#   rtmp/   an RTMP publish from rml_rtmp's client session carrying that FLV's tags
#   h264/   Annex-B from libx264: the head of a 1080p keyframe, a whole 64x64 stream,
#           scaling matrices (cqm=jvt), interlaced, and the 1080p -> 64x64 SPS switch
#   copy/   binary COPY output from the local PostgreSQL (skipped when none answers)
#   stun/ rtcp/ sdp/ csv/ range/ paths/   made in code (feiyan-fuzz seeds)
# Usage: scripts/fuzz-corpus.sh [DIR]   (default tests/fuzz-corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-tests/fuzz-corpus}"
mkdir -p "$out"/{flv,h264,copy}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

# FLV: one second of 160x120 video and a tone, as an RTMP publisher sends it.
ff -f lavfi -i testsrc=size=160x120:rate=15 -f lavfi -i sine=frequency=440:sample_rate=44100 \
   -t 1 -pix_fmt yuv420p -c:v libx264 -preset veryfast -profile:v high -bf 2 -g 15 -c:a aac -b:a 32k \
   -f flv "$out/flv/ffmpeg-high-aac.flv"
ff -f lavfi -i testsrc=size=64x64:rate=10 -f lavfi -i sine=frequency=880:sample_rate=48000 \
   -t 0.5 -pix_fmt yuv420p -c:v libx264 -preset ultrafast -profile:v baseline -g 5 -c:a aac -b:a 24k \
   -f flv "$out/flv/ffmpeg-baseline-aac.flv"

# H.264 Annex-B.
ff -f lavfi -i testsrc=size=1920x1080:rate=25 -frames:v 1 -pix_fmt yuv420p -c:v libx264 -preset ultrafast \
   -f h264 "$tmp/1080p.h264"
head -c 1500 "$tmp/1080p.h264" > "$out/h264/x264-1080p-head.h264"
ff -f lavfi -i testsrc=size=64x64:rate=25 -frames:v 2 -pix_fmt yuv420p -c:v libx264 -preset ultrafast \
   -f h264 "$out/h264/x264-64x64.h264"
ff -f lavfi -i testsrc=size=320x240:rate=25 -frames:v 1 -pix_fmt yuv420p -c:v libx264 -preset ultrafast \
   -profile:v high -x264-params cqm=jvt -f h264 "$tmp/cqm.h264"
head -c 1200 "$tmp/cqm.h264" > "$out/h264/x264-scaling-matrices-head.h264"
ff -f lavfi -i testsrc=size=176x144:rate=25 -frames:v 1 -pix_fmt yuv420p -c:v libx264 -preset ultrafast \
   -flags +ildct+ilme -x264-params interlaced=1 -f h264 "$tmp/interlaced.h264"
head -c 1200 "$tmp/interlaced.h264" > "$out/h264/x264-interlaced-head.h264"
cat "$out/h264/x264-1080p-head.h264" "$out/h264/x264-64x64.h264" > "$out/h264/x264-switch-1080p-64x64.h264"

# PostgreSQL binary COPY: rows shaped as the statistics rollup reads them.
if pg_isready -q -h 127.0.0.1 2>/dev/null; then
  psql -X -q -h 127.0.0.1 -d test -c "COPY (SELECT g::bigint, '站 ' || g, 20422::bigint, g * 10, 0::bigint, 1::bigint, 2::bigint, 3::bigint, 4::bigint, 5::bigint, 6::bigint, -7::bigint FROM generate_series(1, 3) g) TO STDOUT WITH (FORMAT binary)" > "$out/copy/pg-rollup-rows.bin"
  psql -X -q -h 127.0.0.1 -d test -c "COPY (SELECT 1::bigint, NULL::text, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint, 1::bigint) TO STDOUT WITH (FORMAT binary)" > "$out/copy/pg-null-name.bin"
  psql -X -q -h 127.0.0.1 -d test -c "COPY (SELECT 1::bigint WHERE false) TO STDOUT WITH (FORMAT binary)" > "$out/copy/pg-empty.bin"
else
  echo "no PostgreSQL on 127.0.0.1: copy/ seeds left as they are" >&2
fi

# Seeds made in code, and FLV chunks.
cargo run --quiet ${FEIYAN_CARGO_ARGS:-} --bin feiyan-fuzz -- seeds "$out" --flv "$out/flv/ffmpeg-high-aac.flv"
du -sh "$out"
