#!/usr/bin/env bash
# Make sure the PostgreSQL server the store tests use is up (CREDITPIPE_TEST_DB_URL).
# On this project's machines that is the local server on 127.0.0.1:5432; start it if it is down.
set -euo pipefail
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "PostgreSQL is not running; starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q && exit 0
    sleep 1
  done
fi
echo "PostgreSQL at 127.0.0.1:5432 is not available; the PostgreSQL tests cannot run." >&2
exit 1
