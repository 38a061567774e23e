"""How fast `gateway import-mlflow` moves an MLflow store into the gateway.

Builds an MLflow store (SQLite file, PostgreSQL or MySQL/MariaDB database) of RUNS runs with
KEYS metric keys of POINTS points each, written straight into MLflow's schema
(made first by `mlflow db upgrade`, MLflow's own migrations; rows as MLflow's
SQL store writes them: runs with their tags and params, every metric point, the
latest_metrics rows), then times `gateway import-mlflow` into a fresh gateway
database and prints points per second.

    python loadtest/import_bench.py --store sqlite:////tmp/bench/mlflow.db \\
        --target-admin postgresql://postgres@/postgres?host=/tmp/bench-pg --runs 1000 --keys 10 --points 1000

A store that exists already is reused (delete it to rebuild). ``--build-only``
builds and exits. Needs the ``mlflow`` package for `mlflow db upgrade`; the
import itself does not.

On a shared machine the wall time says little; ``--postgres-pid`` (the
postmaster of the gateway's database, and of the store's when it is the same
server) adds the CPU seconds the import and PostgreSQL spent, and points per
CPU second of each (PostgreSQL counts the CPU of the backends it reaped, so the
import's connections are in it once they closed); ``--mysql-pid`` (the
``mariadbd`` or ``mysqld`` of a MySQL store, one process with a thread per
connection) adds that server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_RUN_COLUMNS = ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
                "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id")


def _run_rows(runs: int, experiment_id: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for index in range(runs):
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex
        start = 1_700_000_000_000 + index * 60_000
        rows.append((run_id, f"run-{index}", "LOCAL", "train.py", "", "bench", "FINISHED", start, start + 3_600_000,
                     "", "active", f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts", experiment_id))
    return rows


def _series(run_index: int, key_index: int, points: int, start: int) -> tuple[list, list, list]:
    steps = list(range(points))
    timestamps = [start + step * 100 for step in steps]
    values = [1.0 / (1 + step + run_index + key_index) for step in steps]
    return steps, timestamps, values


def mlflow_upgrade(uri: str) -> None:
    """Make MLflow's schema with MLflow's own migrations."""
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    subprocess.run([mlflow, "db", "upgrade", uri], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_sqlite(path: str, runs: int, keys: int, points: int, *, seed: int = 1) -> int:
    """Fill an MLflow SQLite store (schema made already) with the bench's runs; returns the points written."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    now = 1_700_000_000_000
    with conn:
        conn.execute("INSERT OR IGNORE INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                     "creation_time, last_update_time) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', ?, ?)",
                     (now, now))
        conn.execute("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                     "creation_time, last_update_time) VALUES (1, 'bench', 'mlflow-artifacts:/1', 'active', ?, ?)",
                     (now, now))
    written = 0
    for run_index, run in enumerate(_run_rows(runs, 1, seed)):
        run_id, start = run[0], run[7]
        with conn:
            conn.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * 13)})", run)
            conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                             [("mlflow.runName", run[1], run_id), ("mlflow.user", "bench", run_id)])
            conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                             [(f"p{i}", str(i * run_index), run_id) for i in range(5)])
            for key_index in range(keys):
                key = f"metric_{key_index}"
                steps, timestamps, values = _series(run_index, key_index, points, start)
                conn.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                    zip([key] * points, values, timestamps, [run_id] * points, steps))
                conn.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                             "VALUES (?, ?, ?, ?, 0, ?)", (key, values[-1], timestamps[-1], steps[-1], run_id))
                written += points
    conn.close()
    return written


def build_mysql(url: str, runs: int, keys: int, points: int, *, seed: int = 1) -> int:
    """Fill an MLflow MySQL or MariaDB store (schema made already) with the bench's runs, by multi-row INSERTs."""
    import pymysql

    from gateway.store.mlflow_import.source import mysql_connect_args

    conn = pymysql.connect(**mysql_connect_args(url))
    now = 1_700_000_000_000
    written = 0
    try:
        with conn.cursor() as cursor:
            # Experiment 0 kept as 0 rather than taken for the next AUTO_INCREMENT id, as MLflow does.
            cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            cursor.execute("INSERT IGNORE INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                           "creation_time, last_update_time) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', "
                           "%s, %s), (1, 'bench', 'mlflow-artifacts:/1', 'active', %s, %s)", (now, now, now, now))
            conn.commit()
            for run_index, run in enumerate(_run_rows(runs, 1, seed)):
                run_id, start = run[0], run[7]
                cursor.execute(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join(['%s'] * 13)})", run)
                cursor.executemany("INSERT INTO tags (`key`, value, run_uuid) VALUES (%s, %s, %s)",
                                   [("mlflow.runName", run[1], run_id), ("mlflow.user", "bench", run_id)])
                cursor.executemany("INSERT INTO params (`key`, value, run_uuid) VALUES (%s, %s, %s)",
                                   [(f"p{i}", str(i * run_index), run_id) for i in range(5)])
                for key_index in range(keys):
                    key = f"metric_{key_index}"
                    steps, timestamps, values = _series(run_index, key_index, points, start)
                    cursor.executemany(
                        "INSERT INTO metrics (`key`, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (%s, %s, %s, %s, %s, 0)",
                        list(zip([key] * points, values, timestamps, [run_id] * points, steps)))
                    cursor.execute("INSERT INTO latest_metrics (`key`, value, timestamp, step, is_nan, run_uuid) "
                                   "VALUES (%s, %s, %s, %s, 0, %s)",
                                   (key, values[-1], timestamps[-1], steps[-1], run_id))
                    written += points
                conn.commit()
            cursor.execute("ANALYZE TABLE runs, metrics, tags, params")
    finally:
        conn.close()
    return written


async def build_postgres(url: str, runs: int, keys: int, points: int, *, seed: int = 1) -> int:
    """Fill an MLflow PostgreSQL store (schema made already) with the bench's runs, by COPY."""
    conn = await asyncpg.connect(url)
    now = 1_700_000_000_000
    written = 0
    try:
        await conn.execute("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                           "creation_time, last_update_time) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', "
                           "$1, $1), (1, 'bench', 'mlflow-artifacts:/1', 'active', $1, $1) ON CONFLICT DO NOTHING",
                           now)
        for run_index, run in enumerate(_run_rows(runs, 1, seed)):
            run_id, start = run[0], run[7]
            async with conn.transaction():
                await conn.copy_records_to_table("runs", records=[run], columns=_RUN_COLUMNS)
                await conn.copy_records_to_table(
                    "tags", records=[("mlflow.runName", run[1], run_id), ("mlflow.user", "bench", run_id)],
                    columns=("key", "value", "run_uuid"))
                await conn.copy_records_to_table(
                    "params", records=[(f"p{i}", str(i * run_index), run_id) for i in range(5)],
                    columns=("key", "value", "run_uuid"))
                latest = []
                for key_index in range(keys):
                    key = f"metric_{key_index}"
                    steps, timestamps, values = _series(run_index, key_index, points, start)
                    await conn.copy_records_to_table(
                        "metrics", records=zip([key] * points, values, timestamps, [run_id] * points, steps,
                                               [False] * points),
                        columns=("key", "value", "timestamp", "run_uuid", "step", "is_nan"))
                    latest.append((key, values[-1], timestamps[-1], steps[-1], False, run_id))
                    written += points
                await conn.copy_records_to_table(
                    "latest_metrics", records=latest, columns=("key", "value", "timestamp", "step", "is_nan", "run_uuid"))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return written


def ensure_store(store: str, runs: int, keys: int, points: int) -> None:
    """Build the store unless it exists."""
    if store.startswith("sqlite:"):
        path = store.split(":///", 1)[1]
        if os.path.exists(path):
            return
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        mlflow_upgrade(store)
        started = time.monotonic()
        written = build_sqlite(path, runs, keys, points)
    elif store.startswith("mysql"):
        uri = "mysql+pymysql://" + store.split("://", 1)[1]
        if _mysql_has_runs(uri):
            return
        mlflow_upgrade(uri)
        started = time.monotonic()
        written = build_mysql(uri, runs, keys, points)
    else:
        plain = "postgresql://" + store.split("://", 1)[1]
        if asyncio.run(_has_runs(plain)):
            return
        mlflow_upgrade("postgresql+psycopg2://" + store.split("://", 1)[1])
        started = time.monotonic()
        written = asyncio.run(build_postgres(plain, runs, keys, points))
    print(f"built {store}: {runs} runs, {written:,} points in {time.monotonic() - started:.0f} s", file=sys.stderr)


async def _has_runs(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('runs') IS NOT NULL")) and bool(
            await conn.fetchval("SELECT EXISTS (SELECT 1 FROM runs)"))
    finally:
        await conn.close()


def _mysql_has_runs(url: str) -> bool:
    """Whether the store has runs; makes its database (utf8mb4) when the server has none of that name."""
    import pymysql

    from gateway.store.mlflow_import.source import mysql_connect_args

    args = mysql_connect_args(url)
    database = args.pop("database")
    conn = pymysql.connect(**args)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
            cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
                           "AND table_name = 'runs'", (database,))
            if not cursor.fetchone()[0]:
                return False
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM `{database}`.runs)")
            return bool(cursor.fetchone()[0])
    finally:
        conn.close()


async def fresh_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True,
                        help="sqlite:///path/mlflow.db, postgresql://.../db or mysql://user@host:port/db")
    parser.add_argument("--target-admin", help="PostgreSQL URL where the gateway database is (re)created")
    parser.add_argument("--target-name", default="import_bench")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--points", type=int, default=1000, help="points per key and run")
    parser.add_argument("--batch-runs", type=int, default=100)
    parser.add_argument("--workers", type=int, help="passed to import-mlflow (default: its own)")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--postgres-pid", type=int, help="postmaster PID, to count PostgreSQL's CPU seconds")
    parser.add_argument("--mysql-pid", type=int, help="mariadbd or mysqld PID, to count its CPU seconds")
    args = parser.parse_args()
    ensure_store(args.store, args.runs, args.keys, args.points)
    if args.build_only:
        return
    target = asyncio.run(fresh_database(args.target_admin, args.target_name))
    postgres_before = _postgres_cpu(args.postgres_pid)
    mysql_before = _postgres_cpu(args.mysql_pid)
    own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "gateway", "import-mlflow", "--from", args.store, "--database-url", target,
                    "--batch-runs", str(args.batch_runs), "--no-progress",
                    *(["--workers", str(args.workers)] if args.workers is not None else [])], check=True)
    elapsed = time.monotonic() - started
    own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    points = args.runs * args.keys * args.points
    print(f"import-mlflow: {points:,} points in {elapsed:.1f} s (whole command), {points / elapsed:,.0f} points/s")
    importer_cpu = (own_after.ru_utime - own_before.ru_utime) + (own_after.ru_stime - own_before.ru_stime)
    line = (f"CPU: import-mlflow {importer_cpu:.1f} s ({points / importer_cpu:,.0f} points per CPU second, "
            f"peak memory of its largest process {own_after.ru_maxrss / 1024:.0f} MB)")
    if args.postgres_pid:
        time.sleep(1)  # the backends have exited and been reaped
        postgres_cpu = _postgres_cpu(args.postgres_pid) - postgres_before
        line += f", PostgreSQL {postgres_cpu:.1f} s ({points / postgres_cpu:,.0f} points per CPU second)"
    if args.mysql_pid:
        mysql_cpu = _postgres_cpu(args.mysql_pid) - mysql_before
        line += f", the MySQL store's server {mysql_cpu:.1f} s ({points / mysql_cpu:,.0f} points per CPU second)"
    print(line)


def _postgres_cpu(pid: int | None) -> float:
    """CPU seconds of the postmaster, its live processes and the ones it reaped (of a process
    with threads, mariadbd's, its threads')."""
    if not pid:
        return 0.0
    import psutil

    postmaster = psutil.Process(pid)
    total = sum(postmaster.cpu_times()[:4])
    for child in postmaster.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


if __name__ == "__main__":
    main()
