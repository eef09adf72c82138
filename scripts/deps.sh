#!/usr/bin/env bash
# Installs what feiyan needs from Debian when it is missing, and the pinned hls.js release
# (idempotent, quiet when done).
set -euo pipefail
want=(pkg-config libclang-dev ffmpeg curl ca-certificates libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev)
# An RTSP server for the RTSP pull test (the ffmpeg CLI can push RTSP but not serve it).
want+=(rtsp-server-perl)
[ "${FEIYAN_WANT_CHROMIUM:-0}" = 1 ] && want+=(chromium)
# systemd-analyze, for the test that verifies the shipped unit (config/feiyan.service).
[ "${FEIYAN_WANT_SYSTEMD:-0}" = 1 ] && want+=(systemd)
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

# PostgreSQL for the catalog tests (FEIYAN_WANT_POSTGRES=1, set by scripts/test.sh): install
# it when missing, start the cluster, allow trust logins from 127.0.0.1 (a test-only machine
# setting) and make sure the database `test` exists. The tests connect to
# ${FEIYAN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}.
if [ "${FEIYAN_WANT_POSTGRES:-0}" = 1 ] && [ -z "${FEIYAN_TEST_POSTGRES_URL:-}" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "installing: postgresql"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends postgresql
  fi
  pg_ok() { psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; }
  if ! pg_ok; then
    ver=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    if ! grep -q "feiyan-tests" "$hba"; then
      # First matching line wins in pg_hba.conf, so the trust line goes on top.
      $SUDO sed -i '1i host all all 127.0.0.1/32 trust # feiyan-tests' "$hba"
    fi
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
      || $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
    for _ in $(seq 1 50); do pg_ok && break; sleep 0.2; done
    if ! pg_ok; then
      echo "PostgreSQL did not come up on 127.0.0.1:5432. Clusters here:" >&2
      pg_lsclusters >&2 || true
      echo "A cluster on another port (made while 5432 was taken) can be used with" >&2
      echo "FEIYAN_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/test" >&2
      exit 1
    fi
  fi
  if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
  fi
fi

# hls.js for the pages' HLS playback (served from disk as /assets/vendor/hls.min.js; `cargo
# build` never needs it). The release is pinned in src/config/mod.rs (HLS_JS_VERSION and its
# npm integrity HLS_JS_INTEGRITY); it lands in vendor/hls.js/<version>/hls.min.js, the
# default `[http] vendor_dir`. Nothing to do when that file is there.
root=$(cd "$(dirname "$0")/.." && pwd)
pin() { sed -n "s/^pub const $1: &str = \"\\(.*\\)\";\$/\\1/p" "$root/src/config/mod.rs"; }
hls_version=$(pin HLS_JS_VERSION)
hls_integrity=$(pin HLS_JS_INTEGRITY)
if [ -z "$hls_version" ] || [ "${hls_integrity#sha512-}" = "$hls_integrity" ]; then
  echo "cannot read HLS_JS_VERSION / HLS_JS_INTEGRITY (sha512-...) from src/config/mod.rs" >&2
  exit 1
fi
hls_dir="$root/vendor/hls.js/$hls_version"
if [ ! -s "$hls_dir/hls.min.js" ]; then
  echo "fetching hls.js $hls_version from the npm registry"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL --retry 3 -o "$tmp/hls.tgz" "https://registry.npmjs.org/hls.js/-/hls.js-$hls_version.tgz"
  want=$(printf '%s' "${hls_integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  got=$(sha512sum "$tmp/hls.tgz" | cut -d' ' -f1)
  if [ "$want" != "$got" ]; then
    echo "hls.js-$hls_version.tgz does not match HLS_JS_INTEGRITY in src/config/mod.rs; not installed" >&2
    exit 1
  fi
  tar -xzf "$tmp/hls.tgz" -C "$tmp" package/dist/hls.min.js
  mkdir -p "$hls_dir"
  mv "$tmp/package/dist/hls.min.js" "$hls_dir/hls.min.js.part"
  mv "$hls_dir/hls.min.js.part" "$hls_dir/hls.min.js"
fi
