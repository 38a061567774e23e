#!/bin/sh
# A throwaway PostgreSQL in the foreground: run-postgres PORT USER PASSWORD DATABASE
# (listening on every address of the container with password authentication, and on
# /var/run/postgresql, where pg_isready looks by default).
set -eu
port=$1 user=$2 password=$3 database=$4
bin=/usr/lib/postgresql/15/bin
data=$(mktemp -d /tmp/pgdata.XXXXXX)
printf '%s\n' "$password" > "$data.password"
"$bin/initdb" -D "$data" -U "$user" --auth-local=trust --auth-host=scram-sha-256 --pwfile="$data.password" >/dev/null
rm -f "$data.password"
echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
echo "CREATE DATABASE \"$database\"" | "$bin/postgres" --single -D "$data" postgres >/dev/null
exec "$bin/postgres" -D "$data" -h '*' -p "$port" -k /var/run/postgresql
