#!/usr/bin/env bash
# The shared log against per-object shipping on moto (loopback), each
# layout on a freshly started moto: moto keeps every key in one Python
# process and its LISTs slow down as the bucket fills, which would bias
# whichever layout ran second. Prints benches/shared_log.rs's tables.
#
#   scripts/bench_shared_log.sh          # SHARED_LOG_SECS=5 per run
#
# Needs moto (`python3 -m pip install 'moto[server]' boto3`), as .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${MOTO_PORT:-9010}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AMBER_BENCH_S3_URL="s3://amber-bench/sl?endpoint=http://127.0.0.1:$PORT&region=us-east-1&allow_http=true"
cargo bench --bench shared_log --no-run >/dev/null 2>&1
for layout in ${LAYOUTS:-shared per-object}; do
  moto_server -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
  MOTO=$!
  python3 - "$PORT" <<'PY'
import sys, time, urllib.request, boto3
port = sys.argv[1]
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1); break
    except Exception:
        time.sleep(0.2)
boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test",
             aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket="amber-bench")
PY
  SHARED_LOG_LAYOUTS=$layout cargo bench --bench shared_log 2>&1 | grep -v -e '^Gnuplot' -e 'Finished' -e 'Running'
  kill $MOTO; wait $MOTO 2>/dev/null || true
done
