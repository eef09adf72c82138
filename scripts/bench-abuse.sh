#!/usr/bin/env bash
# Abuse benchmark (issue 23): starts a real feiyan in-process (loopback, ephemeral ports,
# SQLite in a temporary folder), publishes synthetic H.264 + Opus over WHIP and, for each
# abuse case, runs the attack while real WHEP viewers join; prints a markdown table of the
# attack's load, the server's answer and what the viewers saw (docs/benchmarks.md).
# Arguments go to feiyan-abuse-bench, e.g. --cases baseline,login-flood --seconds 20.
#
#   ./scripts/bench-abuse.sh [feiyan-abuse-bench args...]
#
# The WHEP floods bind 127.0.0.2 and 127.0.1.x as source addresses (Linux answers for all
# of 127.0.0.0/8 on lo). Needs the ffmpeg CLI for the test media.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet --bin feiyan-abuse-bench -- "$@"
