#!/usr/bin/env bash
# One command on a fresh machine: install what is missing, build, create the demo station
# (SQLite in data/), start the server, publish a demo programme into the demo channel and
# play a demo film as back-to-back film classes (电影党史课) in a second station's channel.
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
if [ ! -f data/film-station.json ]; then
  $bin/feiyan station add --center "示范中心" --institute "示范所" --name "电影放映站" --json > data/film-station.json
fi
# A demo film for the film class (电影党史课): colour bars and a tone, 3 minutes, made here.
film="media/films/示范影片.mp4"
if [ ! -f "$film" ]; then
  mkdir -p media/films
  ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=25 \
    -f lavfi -i sine=frequency=330:sample_rate=44100 -t 180 \
    -c:v libx264 -preset veryfast -profile:v baseline -g 50 -c:a aac -shortest "$film"
fi
if ! $bin/feiyan film list | grep -q "示范影片"; then
  $bin/feiyan film import "$film"
fi
film_id=$($bin/feiyan film list | awk '/示范影片/ {print $1; exit}')
film_channel=$(python3 -c 'import json;print(json.load(open("data/film-station.json"))["channel"])')
# FEIYAN_DEMO_CITY=1: also fill the catalog with a demo city-year for /admin (once; about
# 90 s on PostgreSQL or SQLite, plus 15-45 s freezing figures on first use) and create
# the admin "demo" / "demo-password".
if [ "${FEIYAN_DEMO_CITY:-0}" = 1 ] && [ ! -f data/demo-city.done ]; then
  $bin/feiyan demo-data --centers 10 --institutes 105 --stations 2100 --days 365
  FEIYAN_ADMIN_PASSWORD=demo-password $bin/feiyan admin add --username demo --role city
  touch data/demo-city.done
fi
channel=$(python3 -c 'import json;print(json.load(open("data/demo-station.json"))["channel"])')
key=$(python3 -c 'import json;print(json.load(open("data/demo-station.json"))["stream_key"])')
# The shipped configuration plus a rendition ladder on the film channel, so the watch page
# offers 原画 (the 720p film, passed through) and 360p (encoded beside it).
demo_config=data/demo.toml
{
  cat config/feiyan.toml
  printf '\n[ingest.channels.%s]\nrenditions = [{ name = "360p", height = 360, video_kbps = 600 }]\n' "$film_channel"
} > "$demo_config"
if [ $# -eq 0 ]; then
  $bin/feiyan --config "$demo_config" serve &
else
  $bin/feiyan serve "$@" &
fi
server=$!
trap 'kill $server ${demo:-} 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 50); do
  curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break
  sleep 0.2
done
$bin/feiyan publish --url "http://127.0.0.1:8080/whip/$channel?title=%E7%A4%BA%E8%8C%83%E8%AF%BE" \
  --key "$key" &
demo=$!
# Film classes back to back for the next hour (the first starts in 5 s).
for i in $(seq 0 19); do
  at=$(date -u -d "+$((5 + i * 185)) seconds" +%Y-%m-%dT%H:%M:%SZ)
  $bin/feiyan screening schedule --station "$film_channel" --film "$film_id" --at "$at" >/dev/null
done
echo
echo "feiyan is up:   http://127.0.0.1:8080/"
echo "film class:     http://127.0.0.1:8080/watch/$film_channel"
echo "demo channel:   http://127.0.0.1:8080/watch/$channel"
echo "publish page:   http://127.0.0.1:8080/publish/$channel   (stream key in data/demo-station.json)"
wait $server
