#!/usr/bin/env bash
# Long fuzz runs: every target of feiyan::fuzzing (flv rtmp stun rtcp sdp h264 copy csv range,
# and the HLS/replay paths against a server it starts on loopback) for SECONDS in all,
# split evenly, from the committed seeds (tests/fuzz-corpus) plus what earlier runs found
# (target/fuzz-corpus). Prints per target the inputs tried, the new corpus entries (inputs
# with an outcome not seen before: no coverage instrumentation on stable Rust), crashes and
# hangs; new entries and crash inputs are saved under target/fuzz-corpus/.
# Then the 1080p -> 64x64 in-band SPS switch through the server's demux + transcode stage
# under valgrind (skipped when valgrind is missing, or with FEIYAN_FUZZ_VALGRIND=0).
#
# Usage: scripts/fuzz.sh [SECONDS] [feiyan-fuzz run options: --target NAME, --rng SEED, --corpus DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
# Release speed, with the checks a debug build makes (overflow, debug assertions) kept on
# for feiyan's own code: an overflow on a peer's bytes is a finding here too.
checks=(--config 'profile.release.package.feiyan.overflow-checks=true'
        --config 'profile.release.package.feiyan.debug-assertions=true')
cargo build --release --quiet "${checks[@]}" --bin feiyan-fuzz
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
bin="$target_dir/release/feiyan-fuzz"

status=0
"$bin" run "$seconds" "$@" || status=$?

if [ "${FEIYAN_FUZZ_VALGRIND:-1}" != 0 ]; then
  if command -v valgrind >/dev/null; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
    ff -f lavfi -i testsrc=size=1920x1080:rate=25 -frames:v 3 -pix_fmt yuv420p -c:v libx264 -preset ultrafast -f h264 "$tmp/a.h264"
    ff -f lavfi -i testsrc=size=64x64:rate=25 -frames:v 3 -pix_fmt yuv420p -c:v libx264 -preset ultrafast -f h264 "$tmp/b.h264"
    cat "$tmp/a.h264" "$tmp/b.h264" > "$tmp/switch.h264"
    echo "valgrind: 1080p -> 64x64 in-band SPS switch through demux + transcode (feiyan-fuzz decode)"
    if valgrind --error-exitcode=1 --quiet --leak-check=no "$bin" decode "$tmp/switch.h264"; then
      echo "valgrind: no errors"
    else
      echo "valgrind: ERRORS (see above)"
      status=1
    fi
  else
    echo "valgrind not installed: SPS switch check skipped"
  fi
fi
exit "$status"
