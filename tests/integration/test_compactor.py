"""Metric chunks: the compactor, and a database of the row-per-point release moved onto chunks.

Every check compares what clients read (history pages, samples, summaries) before
and after, point for point: compaction and conversion change how points are stored,
never which points there are.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid

import asyncpg

from gateway.model import MetricPoint, RunWrite
from gateway.store import compactor
from gateway.store.compactor import Compactor, Progress
from gateway.store.migrations import migrate
from gateway.store.points import CHUNK_POINTS
from gateway.store.tracking import TrackingStore
from gateway.store.writer import BatchWriter

# The last migration of the row-per-point release.
ROWS_RELEASE = 9


async def new_run(pool) -> str:
    run_id = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO runs (run_id, experiment_id, name, start_time, lifecycle_stage) VALUES ($1, 0, 'r', 0, 'active')",
        run_id,
    )
    return run_id


async def log(writer: BatchWriter, run_id: str, points: list[tuple], key: str = "loss", model_id=None) -> None:
    write = RunWrite(run_id, metrics=[MetricPoint(key, v, t, s, model_id) for s, t, v in points])
    assert await writer.write_batch([write]) == [None]


def comparable(metrics) -> list[tuple]:
    return [
        (m.key, m.step, m.timestamp, "NaN" if m.value == "NaN" else m.value, m.model_id, m.dataset_name)
        for m in metrics
    ]


async def everything_read(store: TrackingStore, pool, run_ids: list[str], keys: list[str]) -> dict:
    """What clients can read of the runs: whole histories, pages of them, samples and summaries."""
    seen: dict = {}
    for run_id in run_ids:
        for key in keys:
            whole, _ = await store.get_metric_history(run_id, key, max_results=None, page_token=None)
            pages, token = [], None
            while True:
                page, token = await store.get_metric_history(run_id, key, max_results=777, page_token=token)
                pages.extend(page)
                if token is None:
                    break
            assert comparable(pages) == comparable(whole)
            seen[(run_id, key, "history")] = comparable(whole)
            for n, low, high in ((320, None, None), (50, 100, 900)):
                sampled = await store.get_metric_history_sampled([run_id], key, max_results=n, start_step=low,
                                                                 end_step=high)
                seen[(run_id, key, "sample", n)] = comparable(sampled)
    rows = await pool.fetch("SELECT * FROM metric_summaries WHERE run_id = ANY($1::uuid[]) ORDER BY run_id, key",
                            run_ids)
    seen["summaries"] = [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in rows]
    return seen


async def chunk_shapes(pool) -> list[tuple]:
    return [tuple(r) for r in await pool.fetch(
        "SELECT run_id, key, model_id, sealed, point_count, first_step, last_step FROM metric_chunks "
        "ORDER BY run_id, key, model_id, first_step"
    )]


async def test_compaction_merges_small_chunks_and_changes_no_answer(pool):
    store, writer = TrackingStore(pool), BatchWriter(pool)
    rng = random.Random(3)
    runs = [await new_run(pool) for _ in range(3)]
    for run_id in runs:
        step = 0
        for _ in range(60):  # a training loop flushing a few steps at a time
            size = rng.randrange(1, 300)
            points = [(s, 1000 + s * 10, rng.choice([rng.random(), math.nan, 1e308])) for s in range(step, step + size)]
            await log(writer, run_id, points)
            step += size
        # a late, out-of-order stretch, and a model's series beside the run's own
        await log(writer, run_id, [(s, 5, -1.0) for s in range(0, step, 7)])
        await log(writer, run_id, [(s, 1000 + s * 10, 0.25) for s in range(0, 50)], key="acc", model_id="m-1")
    before = await everything_read(store, pool, runs, ["loss", "acc"])
    small_before = await pool.fetchval("SELECT count(*) FROM metric_chunks WHERE NOT sealed")

    done = await Compactor(pool).until_done()

    assert done.chunks_merged >= small_before - 2 * len(runs)
    assert await everything_read(store, pool, runs, ["loss", "acc"]) == before
    shapes = await chunk_shapes(pool)
    # A series' chunks follow one another without overlapping, all full but the ones
    # sealed before a late stretch, and the last, which stays open.
    by_series: dict = {}
    for run_id, key, model_id, sealed, count, first_step, last_step in shapes:
        by_series.setdefault((run_id, key, model_id), []).append((sealed, count, first_step, last_step))
    for chunks in by_series.values():
        assert all(a[3] < b[2] for a, b in zip(chunks, chunks[1:]))
        assert all(sealed for sealed, *_ in chunks[:-1])
        assert sum(count < CHUNK_POINTS for _, count, *_ in chunks[:-1]) <= 2
    # a second pass finds nothing to do
    assert not (await Compactor(pool).until_done()).did_work
    assert await chunk_shapes(pool) == shapes


async def test_points_after_compaction_are_still_stored_once(pool):
    """Retries of points already compacted into sealed chunks are recognised."""
    store, writer = TrackingStore(pool), BatchWriter(pool)
    run_id = await new_run(pool)
    points = [(s, 1000 + s, float(s)) for s in range(10_000)]
    for start in range(0, len(points), 500):
        await log(writer, run_id, points[start:start + 500])
    await Compactor(pool).until_done()
    await log(writer, run_id, points[1234:1300] + [(20_000, 1, 2.0)])  # a retried request, and one new point
    history, _ = await store.get_metric_history(run_id, "loss", max_results=None, page_token=None)
    assert len(history) == 10_001
    summary = await pool.fetchrow("SELECT point_count, step FROM metric_summaries WHERE run_id = $1", run_id)
    assert tuple(summary) == (10_001, 20_000)


async def test_a_compaction_racing_writers_loses_and_doubles_nothing(pool):
    writer = BatchWriter(pool)
    compactor = Compactor(pool, min_chunks=2, batch_keys=2)
    runs = [await new_run(pool) for _ in range(4)]
    sent: dict = {run_id: [] for run_id in runs}

    async def write(run_id: str) -> None:
        for round_ in range(40):
            points = [(round_ * 10 + i, round_, float(i)) for i in range(10)]
            await log(writer, run_id, points)
            if round_ % 5 == 0:  # a client retrying what it sent before
                await log(writer, run_id, points)
            sent[run_id].extend(points)

    async def compact(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await compactor.merge_round(complete=True)
            await asyncio.sleep(0)

    stop = asyncio.Event()
    compacting = asyncio.create_task(compact(stop))
    await asyncio.gather(*[write(run_id) for run_id in runs])
    stop.set()
    await compacting
    for run_id in runs:
        stored = await pool.fetch(
            "SELECT step, timestamp, value FROM metric_points WHERE run_id = $1 ORDER BY step", run_id)
        assert [tuple(r) for r in stored] == sorted(set(sent[run_id]))
        assert await pool.fetchval("SELECT point_count FROM metric_summaries WHERE run_id = $1", run_id) == 400


async def test_a_database_of_the_row_release_is_read_written_and_converted(fresh_database_url):
    """Rows written by the release before chunks read alongside chunks, take part in the
    duplicate check, and are moved into chunks by the compactor without a change to any answer."""
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, up_to=ROWS_RELEASE)
        runs = [uuid.uuid4().hex for _ in range(2)]
        for run_id in runs:
            await conn.execute(
                "INSERT INTO runs (run_id, experiment_id, name, start_time) VALUES ($1, 0, 'old', 0)", run_id)
            rows = [(run_id, "loss", s, 100 + s, s / 10, None, None, None) for s in range(2_000)]
            rows.append((run_id, "loss", 2_000, 5, math.nan, None, None, None))
            await conn.copy_records_to_table(
                "metrics", records=rows,
                columns=("run_id", "key", "step", "timestamp", "value", "model_id", "dataset_name", "dataset_digest"))
            await conn.execute(
                """INSERT INTO metric_summaries SELECT $1, 'loss', 2000, 5, 'NaN', 0, 199.9, 2001""", run_id)
        await migrate(conn)
    finally:
        await conn.close()

    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    try:
        store, writer = TrackingStore(pool), BatchWriter(pool)
        old = await everything_read(store, pool, runs, ["loss"])
        assert len(old[(runs[0], "loss", "history")]) == 2_001
        # Retried old points are not stored again; an old point sent with its model moves to the model.
        await log(writer, runs[0], [(s, 100 + s, s / 10) for s in range(1_990, 2_000)] + [(2_001, 7, 1.0)])
        await log(writer, runs[0], [(5, 105, 0.5)], model_id="m-7")
        history, _ = await store.get_metric_history(runs[0], "loss", max_results=None, page_token=None)
        assert len(history) == 2_002
        assert [m.model_id for m in history if m.step == 5] == ["m-7"]
        assert await pool.fetchval(
            "SELECT point_count FROM metric_summaries WHERE run_id = $1", uuid.UUID(runs[0])) == 2_002
        before = await everything_read(store, pool, runs, ["loss"])

        done = await Compactor(pool).until_done()

        assert done.rows_converted == 2 * 2_001 - 1  # the point that moved to its model left the rows before
        assert await pool.fetchval("SELECT count(*) FROM metric_rows") == 0
        assert await everything_read(store, pool, runs, ["loss"]) == before
    finally:
        await pool.close()


async def test_the_background_compactor_merges_busy_series_at_once_and_quiet_ones_later(pool):
    writer = BatchWriter(pool)
    busy, quiet = await new_run(pool), await new_run(pool)
    for step in range(12):  # twelve flushes: past min_chunks
        await log(writer, busy, [(step, step, 1.0)])
    for step in range(3):  # three: merged only once the series has been quiet
        await log(writer, quiet, [(step, step, 2.0)])

    async def small_chunks(run_id: str) -> int:
        return await pool.fetchval(
            "SELECT count(*) FROM metric_chunks WHERE run_id = $1 AND NOT sealed", uuid.UUID(run_id))

    stopping = asyncio.Event()
    compacting = asyncio.create_task(Compactor(pool, min_chunks=8).run(0.05, stopping, quiet=2.0))
    try:
        for _ in range(200):
            if await small_chunks(busy) == 1:
                break
            await asyncio.sleep(0.05)
        assert await small_chunks(busy) == 1
        assert await small_chunks(quiet) == 3  # not quiet for long enough yet
        for _ in range(200):
            if await small_chunks(quiet) == 1:
                break
            await asyncio.sleep(0.05)
        assert await small_chunks(quiet) == 1
    finally:
        stopping.set()
        await compacting
    points = await pool.fetch("SELECT run_id, step, value FROM metric_points ORDER BY run_id, step")
    assert sorted((r["run_id"].hex, r["step"], r["value"]) for r in points) == sorted(
        [(busy, s, 1.0) for s in range(12)] + [(quiet, s, 2.0) for s in range(3)])


async def test_while_writes_go_on_a_round_reads_only_the_chunks_worth_merging(pool):
    # A log-batch flood writes chunks of hundreds of points, never merged while it goes on;
    # the round's search reads the small chunks alone, from their index.
    writer = BatchWriter(pool)
    flooded, trickled = await new_run(pool), await new_run(pool)
    for flush in range(300):
        await log(writer, flooded, [(flush * 200 + s, flush, 1.0) for s in range(200)])
    for step in range(5):
        await log(writer, trickled, [(step, step, 2.0)])
    await pool.execute("ANALYZE metric_chunks")
    async with pool.acquire() as conn:
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + compactor._CANDIDATES_WHILE_WRITING, CHUNK_POINTS, 4, 256)
    scans = []

    def walk(node):
        if "Relation Name" in node:
            scans.append((node["Node Type"], node.get("Index Name"), node["Actual Rows"]))
        for child in node.get("Plans", ()):
            walk(child)

    walk(json.loads(plan)[0]["Plan"])
    assert scans == [("Index Scan", "metric_chunks_small", 5)]
    assert await Compactor(pool, min_chunks=4).merge_round() == Progress(
        keys=1, chunks_merged=5, chunks_written=1, points=5)
