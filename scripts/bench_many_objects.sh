#!/usr/bin/env bash
# Many busy objects against one, same server, same run: `amber serve` with
# the store journal (default) and with `--no-journal` (round 1's per-object
# WAL fsyncs), each on a fresh data directory on local disk, with the same
# wrk load on loopback. Every reply waits for its commit to be durable.
#
#   scripts/bench_many_objects.sh            # DUR=10s per wrk run
#   AMBER_FLAGS="--commit-delay-us 0" scripts/bench_many_objects.sh   # extra flags for every server
#
# Prints req/s for one object and for 1,000 warm objects, their ratio, and
# the fsyncs per commit over the 1,000-object run: counted by strace in a
# separate run of the same load (strace slows the server, so its req/s are
# not used), against the server's own amber_commits_total.
# Needs wrk and strace (`apt-get install -y wrk strace`). See
# docs/benchmarks.md for recorded runs.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-16}
WRK="wrk -t1 -c$CONNS -d$DUR"
SCRATCH=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT

cargo build --release --bin amber >/dev/null 2>&1
AMBER=target/release/amber
PORT=8791
URL=http://127.0.0.1:$PORT

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no server at $1" >&2; exit 1; }
rps() { awk '/Requests\/sec/ {print $2}'; }
metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
warm() { seq 1 1000 | xargs -P 16 -I{} curl -s -o /dev/null "$URL/counter/obj{}/increment"; }

side() { # label flags...
  local label=$1; shift
  local data="$SCRATCH/$label-$RANDOM"
  RUST_LOG=warn $AMBER --data "$data" "$@" ${AMBER_FLAGS:-} serve --listen 127.0.0.1:$PORT 2>"$SCRATCH/$label.log" &
  local pid=$!
  wait_port "$URL/"
  curl -s -o /dev/null "$URL/counter/one/increment"
  warm
  local one many
  one=$($WRK "$URL/counter/one/increment" | rps)
  local m0 m1 k0 k1
  m0=$(metric amber_commits_total); k0=$(metric amber_fsyncs_total)
  many=$($WRK -s scripts/many_amber.lua "$URL/" | rps)
  m1=$(metric amber_commits_total); k1=$(metric amber_fsyncs_total)
  # fsyncs per commit, 1,000 objects: strace counts every fsync and
  # fdatasync of the server (SQLite's checkpoints included).
  local c0 c1 j0 j1 trace="$SCRATCH/$label.strace"
  c0=$(metric amber_commits_total)
  j0=$(metric amber_fsyncs_total)
  strace -f -c -e trace=fsync,fdatasync -o "$trace" -p $pid 2>/dev/null &
  local spid=$!
  sleep 1
  wrk -t1 -c"$CONNS" -d5s -s scripts/many_amber.lua "$URL/" >/dev/null
  kill -INT $spid; wait $spid 2>/dev/null || true
  c1=$(metric amber_commits_total)
  j1=$(metric amber_fsyncs_total)
  local syncs
  syncs=$(awk '$NF == "fsync" || $NF == "fdatasync" {s += $4} END {print s + 0}' "$trace")
  printf '%-12s one object %8s req/s   1,000 objects %8s req/s   ratio %s   fsyncs/commit %s (%s / %s)\n' \
    "$label" "$one" "$many" \
    "$(awk -v a="$many" -v b="$one" 'BEGIN {printf "%.2f", a / b}')" \
    "$(awk -v s="$syncs" -v c=$((c1 - c0)) 'BEGIN {printf "%.3f", s / c}')" "$syncs" $((c1 - c0))
  echo "             timed 1,000-object run, no strace: journal fsyncs/commit $(awk -v s=$(( ${k1:-0} - ${k0:-0} )) -v c=$((m1 - m0)) 'BEGIN {printf "%.3f", s / c}') ($(( ${k1:-0} - ${k0:-0} )) / $((m1 - m0)))"
  echo "             strace run: journal fsyncs $(( ${j1:-0} - ${j0:-0} )), the rest (bucket files, checkpoints, catalog) $(( syncs - ${j1:-0} + ${j0:-0} ))"
  echo "             journal, whole run: fsyncs $(metric amber_fsyncs_total), commits $(metric amber_journal_commits_total), bytes $(metric amber_journal_bytes_total)"
  kill -TERM $pid; wait $pid || true
}

echo "== amber serve (release), wrk -t1 -c$CONNS -d$DUR, $(nproc) cores =="
# BUCKETS=none or BUCKETS=default runs one half only.
if [ "${BUCKETS:-all}" != default ]; then
  echo "-- no bucket (local durability alone)"
  side journal --bucket none
  side per-object --bucket none --no-journal
fi
if [ "${BUCKETS:-all}" != none ]; then
  echo "-- the embedded default: log shipping to file://<data>/bucket"
  side journal
  side per-object --no-journal
fi
