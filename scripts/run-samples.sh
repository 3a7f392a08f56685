#!/usr/bin/env bash
# `make run` until the pipeline run (issue #3) lands: check every bundled sample drop as its
# office, write the receipts to $CREDITPIPE_HOME/outbox/<office>/, and say where they are.
set -euo pipefail
cd "$(dirname "$0")/.."
home=${CREDITPIPE_HOME:-$PWD/data}
creditpipe=.venv/bin/creditpipe
as_of=${CREDITPIPE_AS_OF:-}
shopt -s nullglob
files=0
for path in samples/inbox/*/*/*; do
  office=$(basename "$(dirname "$(dirname "$path")")")
  dataset=$(basename "$(dirname "$path")")
  outbox="$home/outbox/$office"
  echo "── $office / $dataset / $(basename "$path")"
  status=0
  "$creditpipe" check "$path" --dataset "$dataset" --office "$office" --receipt-dir "$outbox" \
    ${as_of:+--as-of "$as_of"} --limit 10 || status=$?
  # 0: all rows accepted; 1: some rows or the file rejected (expected for the samples).
  if [ "$status" -gt 1 ]; then
    echo "creditpipe check failed on $path (exit $status)" >&2
    exit "$status"
  fi
  files=$((files + 1))
  echo
done
echo "Checked $files sample drop(s). Receipts (CSV / HTML / JSON) are in: $home/outbox/"
