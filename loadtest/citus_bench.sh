#!/usr/bin/env bash
# Write floods on one PostgreSQL 15 database beside the same server as the coordinator of a
# 3-node Citus cluster (a coordinator and two workers, all on this host, made by
# ../shared/citus/cluster.sh), taking turns; CPU per point of the gateway, the coordinator
# and each worker. Needs Citus built (../shared/citus/build.sh) and root.
#   loadtest/citus_bench.sh [OUT_DIR]
set -euo pipefail
TREE=$(cd "$(dirname "$0")/.." && pwd)
CITUS=${CITUS_SCRIPTS:-$TREE/../shared/citus}
DIR=$(mktemp -d /tmp/citus-bench.XXXXXX); PORT=56300; OUT=${1:-/tmp/citus-bench-out}
mkdir -p $OUT
bash $CITUS/cluster.sh start $DIR $PORT 2 >/dev/null
for p in 56300 56301 56302; do
  psql -q "postgresql://postgres@127.0.0.1:$p/postgres" -c "DROP DATABASE IF EXISTS gwcitus" -c "CREATE DATABASE gwcitus"
  psql -q "postgresql://postgres@127.0.0.1:$p/gwcitus" -c "CREATE EXTENSION citus"
done
psql -q "postgresql://postgres@127.0.0.1:56300/postgres" -c "DROP DATABASE IF EXISTS gwplain" -c "CREATE DATABASE gwplain"
psql -q "postgresql://postgres@127.0.0.1:56300/gwcitus" -c "SELECT citus_set_coordinator_host('127.0.0.1', 56300)" \
  -c "SELECT citus_add_node('127.0.0.1', 56301)" -c "SELECT citus_add_node('127.0.0.1', 56302)"
pid() { head -1 $DIR/node$1/postmaster.pid; }
for round in 1 2; do
  for db in gwplain gwcitus; do
    PYTHONPATH=$TREE python -m gateway serve --database-url "postgresql://postgres@127.0.0.1:56300/$db" --port 5400 \
      --data-dir $DIR/gateway-data > $OUT/$db-$round.log 2>&1 &
    G=$!
    for i in $(seq 60); do curl -sf http://127.0.0.1:5400/health >/dev/null && break; sleep 1; done
    if [ $db = gwcitus ]; then extra="--cpu-of worker1=$(pid 1) --cpu-of worker2=$(pid 2)"; else extra=""; fi
    python $TREE/loadtest/bench.py --url http://127.0.0.1:5400 --scenario log-metric-c64 log-batch-c16 --duration 10 --warmup 2 \
      --cpu-of gateway=$G --cpu-of coordinator=$(pid 0) $extra --json $OUT/$db-$round.json > $OUT/$db-$round.txt 2>&1 || true
    kill $G; wait $G 2>/dev/null || true
  done
done
bash $CITUS/cluster.sh stop $DIR
