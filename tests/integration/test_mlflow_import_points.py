"""Metric points imported from an MLflow store are stored exactly as the gateway's own writer
stores the same history: the same points (each distinct point once, NaN and ±1.8e308 kept), the same
summaries, in chunks a reader takes in the same order."""

from __future__ import annotations

import math
import random
import sqlite3
import uuid

import asyncpg
import pytest

from gateway.model import MetricPoint, RunWrite
from gateway.store.migrations import migrate
from gateway.store.mlflow_import import import_mlflow, series_reading
from gateway.store.mlflow_import.revisions import HEAD
from gateway.store.writer import BatchWriter

pytestmark = pytest.mark.timeout(120)

# The tables the importer reads, as MLflow's migrations make them (columns it does not read left out).
MLFLOW_TABLES = """
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256) NOT NULL, artifact_location
    VARCHAR(256), lifecycle_stage VARCHAR(32), creation_time BIGINT, last_update_time BIGINT);
CREATE TABLE experiment_tags (key VARCHAR(250), value VARCHAR(5000), experiment_id INTEGER,
    PRIMARY KEY (key, experiment_id));
CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, name VARCHAR(250), source_type VARCHAR(20),
    user_id VARCHAR(256), status VARCHAR(9), start_time BIGINT, end_time BIGINT, lifecycle_stage VARCHAR(20),
    artifact_uri VARCHAR(200), experiment_id INTEGER, deleted_time BIGINT);
CREATE TABLE metrics (key VARCHAR(250) NOT NULL, value FLOAT NOT NULL, timestamp BIGINT NOT NULL,
    run_uuid VARCHAR(32) NOT NULL, step BIGINT DEFAULT '0' NOT NULL, is_nan BOOLEAN DEFAULT '0' NOT NULL,
    PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan));
CREATE INDEX index_metrics_run_uuid ON metrics (run_uuid);
CREATE TABLE params (key VARCHAR(250) NOT NULL, value VARCHAR(8000) NOT NULL, run_uuid VARCHAR(32) NOT NULL,
    PRIMARY KEY (key, run_uuid));
CREATE TABLE tags (key VARCHAR(250) NOT NULL, value VARCHAR(8000), run_uuid VARCHAR(32) NOT NULL,
    PRIMARY KEY (key, run_uuid));
"""

BIG = 1.7976931348623157e308


def histories(seed: int) -> dict[tuple[str, str], list[tuple[int, int, float]]]:
    """Points by (run, key): ties of step and timestamp, NaN beside numbers at one step and time,
    ±1.8e308 (MLflow's infinities), a step with more points than a chunk, negative steps, times
    spanning more than 2^31 ms within a chunk, and long rising histories."""
    rng = random.Random(seed)
    runs = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(4)]
    found: dict[tuple[str, str], set] = {}

    def add(run, key, step, timestamp, value):
        found.setdefault((run, key), set()).add((step, timestamp, value))

    for step in range(9000):
        add(runs[0], "loss", step, 1_000 + step, 1 / (step + 1))
    for index in range(5000):
        add(runs[0], "crowded", 7, index % 50, rng.choice([0.5, 1.5, math.nan, BIG, -BIG, 0.0]))
    for index in range(3000):
        add(runs[1], "noisy", rng.randrange(-50, 400), rng.randrange(0, 5), rng.choice([math.nan, rng.random()]))
    for step in range(6000):
        add(runs[2], "wide", step * 1_000_000, step * 10_000_000_000, float(step))
    for key in ("a", "b", "c"):
        for step in range(1500):
            add(runs[3], key, step, 1_700_000_000_000 + step, rng.random())
    return {key: sorted(points, key=lambda p: (p[0], p[1], p[2] != p[2], 0.0 if p[2] != p[2] else p[2]))
            for key, points in found.items()}


def write_mlflow_store(path, points_by_key, *, index: bool = False) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(MLFLOW_TABLES + (INDEX_3X if index else ""))
    with conn:
        conn.execute("INSERT INTO alembic_version VALUES (?)", (HEAD,))
        conn.execute("INSERT INTO experiments VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 1, 1)")
        for run_id in sorted({run for run, _ in points_by_key}):
            conn.execute("INSERT INTO runs (run_uuid, name, user_id, status, start_time, lifecycle_stage, "
                         "artifact_uri, experiment_id) VALUES (?, 'r', 'u', 'FINISHED', 5, 'active', 'x', 0)",
                         (run_id,))
        rows = []
        for (run_id, key), points in points_by_key.items():
            # As MLflow stores them: NaN as 0 with is_nan set, in no particular order.
            for step, timestamp, value in points:
                rows.append((key, 0.0 if value != value else value, timestamp, run_id, step, value != value))
        random.Random(3).shuffle(rows)
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()


async def write_through_gateway(url: str, points_by_key) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        for run_id in sorted({run for run, _ in points_by_key}):
            await conn.execute("INSERT INTO runs (run_id, experiment_id, start_time) VALUES ($1, 0, 5)", run_id)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        writer = BatchWriter(pool)
        for (run_id, key), points in points_by_key.items():
            shuffled = list(points)
            random.Random(5).shuffle(shuffled)
            for start in range(0, len(shuffled), 1000):
                write = RunWrite(run_id=run_id, metrics=[MetricPoint(key, v, t, s) for s, t, v in
                                                         shuffled[start:start + 1000]])
                assert await writer.write_batch([write]) == [None]
    finally:
        await pool.close()


STORED = {
    "points": "SELECT run_id, key, step, timestamp, value::text FROM metric_points ORDER BY 1, 2, 3, 4, value",
    "summaries": "SELECT run_id, key, step, timestamp, value::text, min_value, max_value, point_count "
                 "FROM metric_summaries ORDER BY 1, 2",
}


async def stored(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(row) for row in await conn.fetch(sql)] for name, sql in STORED.items()}
    finally:
        await conn.close()


async def history_pages(url: str, points_by_key) -> dict:
    """Each series as the gateway's reader gives it (get-history's order)."""
    from gateway.store.tracking import TrackingStore

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        store = TrackingStore(pool)
        pages = {}
        for run_id, key in points_by_key:
            page, _ = await store.get_metric_history(run_id, key, max_results=None, page_token=None)
            pages[(run_id, key)] = [(m.step, m.timestamp, str(m.value)) for m in page]
        return pages
    finally:
        await pool.close()


async def write_mlflow_postgres_store(url: str, points_by_key) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(MLFLOW_TABLES + INDEX_3X)
        await conn.execute("INSERT INTO alembic_version VALUES ($1)", HEAD)
        await conn.execute("INSERT INTO experiments VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 1, 1)")
        for run_id in sorted({run for run, _ in points_by_key}):
            await conn.execute("INSERT INTO runs (run_uuid, name, user_id, status, start_time, lifecycle_stage, "
                               "artifact_uri, experiment_id) VALUES ($1, 'r', 'u', 'FINISHED', 5, 'active', 'x', 0)",
                               run_id)
        rows = [(key, 0.0 if value != value else value, timestamp, run_id, step, value != value)
                for (run_id, key), points in points_by_key.items() for step, timestamp, value in points]
        random.Random(3).shuffle(rows)
        await conn.copy_records_to_table("metrics", records=rows)
    finally:
        await conn.close()


# MLflow 3.x's index, which the importer reads a series through.
INDEX_3X = "CREATE INDEX index_metrics_run_uuid_key_step ON metrics (run_uuid, key, step);"


@pytest.mark.parametrize("store, workers", [("sqlite 2.x", 0), ("sqlite 3.x", 0), ("sqlite 3.x", 2),
                                            ("postgresql 3.x", None)])
async def test_imported_points_are_stored_as_the_gateway_writes_them(postgres, tmp_path, store, workers,
                                                                     monkeypatch):
    points_by_key = histories(11)
    # Workers take a batch in parts of whole runs: parts of a run or two here.
    monkeypatch.setattr(series_reading, "POINTS_PER_PART", 5000)
    if store.startswith("sqlite"):
        path = tmp_path / "mlflow.db"
        write_mlflow_store(path, points_by_key, index=store.endswith("3.x"))
        source = f"sqlite:///{path}"
    else:
        source = await postgres.create_database()
        await write_mlflow_postgres_store(source, points_by_key)
    written, imported = await postgres.create_database(), await postgres.create_database()
    await write_through_gateway(written, points_by_key)
    report = await import_mlflow(source, imported, show_progress=False, batch_runs=2, workers=workers)
    assert report.copied["metric points"] == sum(len(points) for points in points_by_key.values())
    assert await stored(imported) == await stored(written)
    assert await history_pages(imported, points_by_key) == await history_pages(written, points_by_key)
    conn = await asyncpg.connect(imported)
    try:
        # Every chunk sealed, at most a chunk's points, and a series' chunks in order without overlap.
        assert await conn.fetchval("SELECT bool_and(sealed) AND max(point_count) <= 4096 FROM metric_chunks")
        overlapping = await conn.fetchval(
            """SELECT count(*) FROM (
                   SELECT run_id, key, first_step, last_step,
                          lag(last_step) OVER (PARTITION BY run_id, key ORDER BY first_step, last_step) AS before
                   FROM metric_chunks) c
               WHERE before > first_step""")
        assert overlapping == 0
    finally:
        await conn.close()


async def test_a_worker_that_sees_the_store_changed_leaves_the_batch_to_the_import(postgres, tmp_path):
    """Points added to a SQLite store in WAL mode after the import took its snapshot are seen by a
    worker process that opens the file later: its counts differ, so the import reads the batch itself,
    and what it copies is its snapshot."""
    from gateway.store.mlflow_import.importer import MlflowImporter
    from gateway.store.mlflow_import.series_reading import Workers
    from gateway.store.mlflow_import.source import open_source

    points_by_key = histories(12)
    path = tmp_path / "mlflow.db"
    write_mlflow_store(path, points_by_key, index=True)
    writer = sqlite3.connect(path)
    assert writer.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    imported = await postgres.create_database()
    source = await open_source(f"sqlite:///{path}")
    workers = None
    conn = await asyncpg.connect(imported)
    try:
        (run_id, key), points = next(iter(points_by_key.items()))
        with writer:  # after the import's snapshot, before the worker opens the file
            writer.execute("INSERT INTO metrics VALUES (?, 0.25, 1, ?, 123456789, 0)", (key, run_id))
        workers = Workers(f"sqlite:///{path}", 1)
        report = await MlflowImporter(source, conn, batch_runs=2, show_progress=False, workers=workers).run()
    finally:
        await conn.close()
        await source.close()
        if workers is not None:
            workers.close()
        writer.close()
    assert report.copied["metric points"] == sum(len(points) for points in points_by_key.values())
    written = await postgres.create_database()
    await write_through_gateway(written, points_by_key)
    assert await stored(imported) == await stored(written)
