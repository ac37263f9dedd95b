#!/usr/bin/env bash
# Side-by-side: `amber serve` against workerd (npm package) serving the same
# SQLite-backed counter, with the same wrk load on loopback.
#
#   scripts/bench_vs_workerd.sh [WORKERD_BIN] [PEERS_DIR]
#
# WORKERD_BIN defaults to /tmp/wd/node_modules/@cloudflare/workerd-linux-64/bin/workerd
# (install with `npm install workerd` in /tmp/wd); PEERS_DIR to ../shared/peers.
# Needs wrk (`apt-get install -y wrk`). Results go to stdout; see docs/runtime.md.
# DUR=10s sets each wrk run's length; ORDER=workerd,amber swaps the sides.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERD=${1:-/tmp/wd/node_modules/@cloudflare/workerd-linux-64/bin/workerd}
PEERS=${2:-../shared/peers}
DUR=${DUR:-10s}
WRK="wrk -t1 -c16 -d$DUR"
SCRATCH=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT

cargo build --release --bin amber >/dev/null 2>&1
AMBER=target/release/amber

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no server at $1" >&2; exit 1; }
rps() { awk '/Requests\/sec/ {print $2}'; }
warm() { # url-prefix: create objects obj1..obj1000 outside the measurement
  seq 1 1000 | xargs -P 16 -I{} curl -s -o /dev/null "$1{}"
}
run() { # label url [script]
  local label=$1 url=$2 script=${3:-}
  curl -s -o /dev/null "$url"   # create the object outside the measurement
  if [ -n "$script" ]; then out=$($WRK -s "$script" "$url"); else out=$($WRK "$url"); fi
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  printf '%-34s %10s req/s  %s\n' "$label" "$(echo "$out" | rps)" "$errs"
  echo "$out" | awk '/Latency/ {print "    latency avg " $2 ", max " $4}'
}

amber_side() {
echo "== amber serve (release) =="
RUST_LOG=warn $AMBER --data "$SCRATCH/amber" serve --listen 127.0.0.1:8787 2>"$SCRATCH/amber.log" &
APID=$!
wait_port http://127.0.0.1:8787/
run "SQL increment, one object" http://127.0.0.1:8787/counter/one/increment
run "SQL increment, 1000 new objects" http://127.0.0.1:8787/ scripts/many_amber.lua
warm http://127.0.0.1:8787/counter/obj
run "SQL increment, 1000 warm objects" http://127.0.0.1:8787/ scripts/many_amber.lua
run "SQL read" http://127.0.0.1:8787/counter/one/read
run "KV increment" http://127.0.0.1:8787/counter/one/kv
echo "    final value: $(curl -s http://127.0.0.1:8787/counter/one)"
kill -TERM $APID; wait $APID || true
}

workerd_side() {
echo "== workerd $($WORKERD --version) =="
mkdir -p "$SCRATCH/wd/do-data"
cp "$PEERS/config.capnp" "$PEERS/counter.js" "$SCRATCH/wd/"
( cd "$SCRATCH/wd" && exec "$WORKERD" serve --experimental config.capnp ) 2>"$SCRATCH/wd.log" &
WPID=$!
wait_port http://127.0.0.1:8787/read
run "SQL increment, one object" "http://127.0.0.1:8787/?name=one"
run "SQL increment, 1000 new objects" http://127.0.0.1:8787/ "$PEERS/many.lua"
warm "http://127.0.0.1:8787/?name=obj"
run "SQL increment, 1000 warm objects" http://127.0.0.1:8787/ "$PEERS/many.lua"
run "SQL read" "http://127.0.0.1:8787/read?name=one"
run "KV increment" "http://127.0.0.1:8787/kv?name=one"
kill $WPID; wait $WPID 2>/dev/null || true
}

# ORDER=workerd,amber runs workerd first, to check that the order (and any
# drift in background load) does not decide the result.
for side in $(echo "${ORDER:-amber,workerd}" | tr ',' ' '); do
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  "${side}_side"
done
