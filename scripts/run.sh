#!/usr/bin/env bash
# One command on a fresh machine: install what is missing, build, create the demo station
# (SQLite in data/), start the server and publish a demo programme into the demo channel.
# Open http://127.0.0.1:8080/ to watch. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --bins
bin=target/release
export FEIYAN_DATABASE_URL="${FEIYAN_DATABASE_URL:-sqlite://data/feiyan.db}"
mkdir -p data
if [ ! -f data/demo-station.json ]; then
  $bin/feiyan station add --center "示范中心" --institute "示范所" --name "示范站" --json > data/demo-station.json
fi
# FEIYAN_DEMO_CITY=1: also fill the catalog with a demo city-year for /admin (once; about
# 90 s on PostgreSQL, 15-20 min on SQLite) and create the admin "demo" / "demo-password".
if [ "${FEIYAN_DEMO_CITY:-0}" = 1 ] && [ ! -f data/demo-city.done ]; then
  $bin/feiyan demo-data --centers 10 --institutes 105 --stations 2100 --days 365
  FEIYAN_ADMIN_PASSWORD=demo-password $bin/feiyan admin add --username demo --role city
  touch data/demo-city.done
fi
channel=$(python3 -c 'import json;print(json.load(open("data/demo-station.json"))["channel"])')
key=$(python3 -c 'import json;print(json.load(open("data/demo-station.json"))["stream_key"])')
$bin/feiyan serve "$@" &
server=$!
trap 'kill $server ${demo:-} 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 50); do
  curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break
  sleep 0.2
done
$bin/feiyan publish --url "http://127.0.0.1:8080/whip/$channel?title=%E7%A4%BA%E8%8C%83%E8%AF%BE" \
  --key "$key" &
demo=$!
echo
echo "feiyan is up:   http://127.0.0.1:8080/"
echo "demo channel:   http://127.0.0.1:8080/watch/$channel"
echo "publish page:   http://127.0.0.1:8080/publish/$channel   (stream key in data/demo-station.json)"
wait $server
