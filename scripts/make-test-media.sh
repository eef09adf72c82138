#!/usr/bin/env bash
# Makes every ingest test clip with the ffmpeg CLI (lavfi testsrc + sine), so no media
# blobs live in git. Usage: scripts/make-test-media.sh [OUT_DIR] [SECONDS]
# Default OUT_DIR is media/generated (git-ignored). Existing clips are kept (delete to remake).
#   h264-bframes-aac.flv   H.264 High with B-frames + AAC 44.1 kHz stereo (what OBS sends)
#   h264-bframes-aac.mp4   the same in MP4 (film library)
#   h264-baseline-aac.mp4  H.264 constrained baseline, no B-frames + AAC 44.1 kHz (passthrough)
#   hevc-aac.mp4           HEVC + AAC (must be transcoded)
#   corrupt.mp4            a truncated, scrambled MP4 (must be rejected)
#   not-media.mp4          text with a media file name (must be rejected)
set -euo pipefail
out="${1:-$(dirname "$0")/../media/generated}"
secs="${2:-6}"
mkdir -p "$out"
ff() { ffmpeg -hide_banner -nostdin -loglevel error -y "$@"; }
src=(-f lavfi -i "testsrc=size=640x360:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" -t "$secs")
aac=(-c:a aac -b:a 96k -ar 44100 -ac 2)
[ -s "$out/h264-bframes-aac.mp4" ] || ff "${src[@]}" -pix_fmt yuv420p -c:v libx264 -profile:v high \
  -bf 3 -g 60 -b:v 800k "${aac[@]}" "$out/h264-bframes-aac.mp4"
[ -s "$out/h264-bframes-aac.flv" ] || ff -i "$out/h264-bframes-aac.mp4" -c copy "$out/h264-bframes-aac.flv"
[ -s "$out/h264-baseline-aac.mp4" ] || ff "${src[@]}" -pix_fmt yuv420p -c:v libx264 -profile:v baseline \
  -bf 0 -g 60 -b:v 800k "${aac[@]}" "$out/h264-baseline-aac.mp4"
[ -s "$out/hevc-aac.mp4" ] || ff "${src[@]}" -pix_fmt yuv420p -c:v libx265 -x265-params log-level=error \
  -b:v 500k "${aac[@]}" "$out/hevc-aac.mp4"
if [ ! -s "$out/corrupt.mp4" ]; then
  # Keep the first 4 KiB (no moov atom: the MP4 was written with moov at the end) and scramble it.
  head -c 4096 "$out/h264-bframes-aac.mp4" | tr 'A-Za-z' 'N-ZA-Mn-za-m' > "$out/corrupt.mp4"
fi
[ -s "$out/not-media.mp4" ] || echo "this is a text file, not a film" > "$out/not-media.mp4"
echo "$out"
