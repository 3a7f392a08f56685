#!/usr/bin/env bash
# `make run` (until the Airflow DAG runs of issue #7): drop the bundled sample files into the
# inbox of $CREDITPIPE_HOME and run the pipeline over it (`creditpipe run`: archive → check →
# load into the embedded SQLite store → receipts), then say where everything is.
# Running it again re-drops the same files: the second run reports them as duplicates.
set -euo pipefail
cd "$(dirname "$0")/.."
home=${CREDITPIPE_HOME:-$PWD/data}
export CREDITPIPE_HOME=$home
as_of=${CREDITPIPE_AS_OF:-}
mkdir -p "$home/inbox"
cp -R samples/inbox/. "$home/inbox/"
echo "Dropped the sample files into $home/inbox/"
echo
status=0
.venv/bin/creditpipe run ${as_of:+--as-of "$as_of"} || status=$?
if [ "$status" -ne 0 ]; then
  echo "creditpipe run did not complete (exit $status)" >&2
  exit "$status"
fi
echo
echo "Receipts (CSV / HTML / JSON): $home/outbox/<office>/"
echo "Raw files, content-addressed:  $home/archive/"
echo "Store:                         ${CREDITPIPE_DB_URL:-sqlite:///$home/creditpipe.db}"
echo
year=${as_of:-$(TZ=Asia/Shanghai date +%F)}
year=${year:0:4}
.venv/bin/creditpipe report withdrawal-rate --from "$year-01-01" --to "$year-12-31" \
  ${as_of:+--as-of "$as_of"} --out "$home/reports" | tail -4
