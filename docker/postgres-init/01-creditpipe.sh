#!/usr/bin/env bash
# The creditpipe store's role and database, beside Airflow's metadata database on the same
# server. The postgres image runs this once, when its data volume is empty (the first start); to
# change the password later, ALTER ROLE by hand and update CREDITPIPE_DB_PASSWORD to match.
#
# The password is passed as a psql variable (:'password' quotes it as a literal), never pasted
# into the SQL text, so any character is safe in it. Names here must match CREDITPIPE_DB_URL in
# docker-compose.yaml (tests/test_docker.py checks that they do).
set -eo pipefail

if [ -z "${CREDITPIPE_DB_PASSWORD:-}" ]; then
  echo "01-creditpipe.sh: CREDITPIPE_DB_PASSWORD is not set (see docker/.env.example)" >&2
  exit 1
fi

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=password="$CREDITPIPE_DB_PASSWORD" --set=metadata_db="$POSTGRES_DB" <<'EOSQL'
CREATE ROLE creditpipe LOGIN PASSWORD :'password';
CREATE DATABASE creditpipe OWNER creditpipe ENCODING 'UTF8' TEMPLATE template0;
-- Each database is reachable only by its own role (and the superuser that owns Airflow's).
REVOKE CONNECT, TEMPORARY ON DATABASE creditpipe FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE :"metadata_db" FROM PUBLIC;
EOSQL
