#!/usr/bin/env bash
# `make run`: drop the bundled sample files into the inbox of $CREDITPIPE_HOME, then run the
# real Airflow DAGs over them with DAG.test() on a fresh SQLite metadata database under
# .airflow/run/ (scripts/run_dags.py): penalty_intake and abnormal_patent_intake (one mapped
# task per file), credit_publish (flags + extracts), credit_reports; then print the summary.
# The business date is $CREDITPIPE_AS_OF (YYYY-MM-DD), default today in Asia/Shanghai.
# Running it again re-drops the same files: the intake reports them as duplicates, nothing is
# loaded twice and the publication is unchanged. scripts/run-samples.sh is the same without
# Airflow (`creditpipe run`).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${CREDITPIPE_HOME:-$PWD/data}
export CREDITPIPE_HOME=$home
as_of=${CREDITPIPE_AS_OF:-$(TZ=Asia/Shanghai date +%F)}
mkdir -p "$home/inbox"
cp -R samples/inbox/. "$home/inbox/"
echo "Dropped the sample files into $home/inbox/"
exec .venv/bin/python scripts/run_dags.py --as-of "$as_of" --airflow-home "$PWD/.airflow/run"
