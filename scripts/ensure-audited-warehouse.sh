#!/usr/bin/env bash
# The audited test warehouses of the monitoring tests (docs/monitoring.md), idempotent:
# - PostgreSQL: Debian's pgaudit and a SECOND cluster "audited" on port 5433 that loads it, logging
#   reads and writes to csvlog files in its data directory. The catalog's own cluster (5432) is never
#   touched or restarted.
# - MariaDB (3306): the server_audit plugin shipped with MariaDB, logging queries to a file.
# `make test` runs it after scripts/ensure-services.sh; it also runs alone.
set -euo pipefail

VERSION=${PG_AUDITED_VERSION:-15}
CLUSTER=audited
PORT=${PG_AUDITED_PORT:-5433}
CONF=/etc/postgresql/$VERSION/$CLUSTER

if [ ! -e "/usr/lib/postgresql/$VERSION/lib/pgaudit.so" ]; then
  echo "audited warehouse: installing postgresql-$VERSION-pgaudit"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$VERSION-pgaudit" >/dev/null
fi

if [ ! -d "$CONF" ]; then
  echo "audited warehouse: creating PostgreSQL cluster $VERSION/$CLUSTER on port $PORT"
  pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" >/dev/null
fi

# Settings in conf.d so a re-run rewrites them whole; trust on loopback like the main cluster.
install -d -o postgres -g postgres "$CONF/conf.d"
cat >"$CONF/conf.d/pgaudit.conf" <<CONFEOF
port = $PORT
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'pgaudit'
pgaudit.log = 'read,write'
pgaudit.log_relation = on
pgaudit.log_parameter = off
pgaudit.log_rows = on
log_destination = 'csvlog'
logging_collector = on
log_directory = 'log'
log_filename = 'postgresql-%Y-%m-%d_%H%M%S.log'
log_rotation_size = 100MB
CONFEOF
chown postgres:postgres "$CONF/conf.d/pgaudit.conf"
if ! grep -q "^include_dir = 'conf.d'" "$CONF/postgresql.conf" && ! grep -q "^include_dir = '$CONF/conf.d'" "$CONF/postgresql.conf"; then
  echo "include_dir = 'conf.d'" >>"$CONF/postgresql.conf"
fi
cat >"$CONF/pg_hba.conf" <<HBAEOF
local all all trust
host all all 127.0.0.1/32 trust
HBAEOF
chown postgres:postgres "$CONF/pg_hba.conf"

if ! pg_isready -h 127.0.0.1 -p "$PORT" -q; then
  echo "audited warehouse: starting PostgreSQL $VERSION/$CLUSTER"
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start
fi
for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p "$PORT" -q && break; sleep 1; done
pg_isready -h 127.0.0.1 -p "$PORT" -q || { echo "audited warehouse: PostgreSQL on $PORT is not available" >&2; exit 1; }
loaded=$(psql -h 127.0.0.1 -p "$PORT" -U postgres -Atc "SHOW shared_preload_libraries")
if [[ "$loaded" != *pgaudit* ]]; then  # created before this script set it: only this cluster restarts
  echo "audited warehouse: restarting $VERSION/$CLUSTER to load pgaudit"
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" restart
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p "$PORT" -q && break; sleep 1; done
fi
PGOPTIONS="-c client_min_messages=warning" psql -h 127.0.0.1 -p "$PORT" -U postgres -qAtc "CREATE EXTENSION IF NOT EXISTS pgaudit" >/dev/null
psql -h 127.0.0.1 -p "$PORT" -U postgres -qAtc "SELECT pg_reload_conf()" >/dev/null

# MariaDB: server_audit (ships with MariaDB), query events to a file the pull can read.
MYSQL=(mysql --protocol=tcp -h 127.0.0.1 -P "${MARIADB_PORT:-3306}" -u root -N -B)
if ! "${MYSQL[@]}" -e "SELECT 1 FROM information_schema.plugins WHERE plugin_name='SERVER_AUDIT'" | grep -q 1; then
  echo "audited warehouse: installing MariaDB's server_audit plugin"
  "${MYSQL[@]}" -e "INSTALL SONAME 'server_audit'"
fi
"${MYSQL[@]}" -e "SET GLOBAL server_audit_output_type='file';
  SET GLOBAL server_audit_file_path='${MARIADB_AUDIT_FILE:-/var/lib/mysql/server_audit.log}';
  SET GLOBAL server_audit_events='QUERY_DML';
  SET GLOBAL server_audit_query_log_limit=1048576;
  SET GLOBAL server_audit_logging=ON;"
# A log shipper Debian has, for the push test (tests/monitoring/test_shipper_syslog_ng.py): syslog-ng
# tails the csvlog and POSTs batches to the catalog with its http() destination. Not started as a
# service: the test runs its own instance.
if [ ! -x /usr/sbin/syslog-ng ] || ! ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; then
  echo "audited warehouse: installing syslog-ng (the shipper of the push test)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends syslog-ng-core syslog-ng-mod-http >/dev/null
fi
echo "audited warehouse: PostgreSQL+pgaudit on 127.0.0.1:$PORT, MariaDB server_audit on, syslog-ng installed"
