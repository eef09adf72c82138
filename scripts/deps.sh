#!/usr/bin/env bash
# Installs what feiyan needs from Debian when it is missing (idempotent, quiet when done).
set -euo pipefail
want=(pkg-config libclang-dev ffmpeg curl ca-certificates libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev)
[ "${FEIYAN_WANT_CHROMIUM:-0}" = 1 ] && want+=(chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is required (Rust >= 1.94): https://rustup.rs" >&2
  exit 1
fi
