"""The COPY writer (the ingest sink) against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import random
import uuid

import asyncpg

from gateway.errors import InvalidParameter, NotFound
from gateway.model import KeyValue, MetricPoint, RunWrite
from gateway.store.migrations import migrate
from gateway.store.writer import BatchWriter


async def new_run(pool, stage: str = "active") -> str:
    run_id = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO runs (run_id, experiment_id, name, start_time, lifecycle_stage) VALUES ($1, 0, 'r', 0, $2)",
        run_id,
        stage,
    )
    return run_id


async def test_migrations_are_idempotent_and_create_the_default_experiment(pool):
    async with pool.acquire() as conn:
        assert await migrate(conn) == []
    row = await pool.fetchrow("SELECT experiment_id, name, artifact_location FROM experiments")
    assert tuple(row) == (0, "Default", "mlflow-artifacts:/0")


async def test_concurrent_migrations_apply_once(fresh_database_url):
    async def one():
        conn = await asyncpg.connect(fresh_database_url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    results = await asyncio.gather(*[one() for _ in range(4)])
    assert sorted(len(r) for r in results) == [0, 0, 0, len(max(results, key=len))]
    assert sum(len(r) for r in results) >= 1


async def test_a_bad_write_fails_alone_and_its_neighbours_commit(pool):
    writer = BatchWriter(pool)
    live, deleted = await new_run(pool), await new_run(pool, "deleted")
    missing = uuid.uuid4().hex
    await writer.write_batch([RunWrite(live, params=[KeyValue("p", "old")])])
    writes = [
        RunWrite(live, metrics=[MetricPoint("m", 1.0, 10, 0)], params=[KeyValue("q", "1")]),
        RunWrite(live, metrics=[MetricPoint("m", 2.0, 11, 1)], params=[KeyValue("p", "new"), KeyValue("r", "x")]),
        RunWrite(deleted, metrics=[MetricPoint("m", 3.0, 12, 2)]),
        RunWrite(missing, tags=[KeyValue("t", "v")]),
        RunWrite(live, tags=[KeyValue("t", "v")]),
    ]
    outcomes = await writer.write_batch(writes)
    assert outcomes[0] is None and outcomes[4] is None
    assert isinstance(outcomes[1], InvalidParameter)
    assert outcomes[1].message == (
        "Changing param values is not allowed. Param with key='p' was already logged with value='old' "
        f"for run ID='{live}'. Attempted logging new value 'new'."
    )
    assert isinstance(outcomes[2], InvalidParameter)
    assert outcomes[2].message == f"The run {deleted} must be in the 'active' state. Current state is deleted."
    assert isinstance(outcomes[3], NotFound)
    params = {r["key"]: r["value"] for r in await pool.fetch("SELECT key, value FROM params WHERE run_id = $1", live)}
    assert params == {"p": "old", "q": "1"}  # nothing of the failed write, not even its good param "r"
    points = await pool.fetch("SELECT value FROM metric_points WHERE run_id = $1", live)
    assert [r["value"] for r in points] == [1.0]
    assert await pool.fetchval("SELECT count(*) FROM metric_points WHERE run_id = $1", deleted) == 0
    assert await pool.fetchval("SELECT value FROM run_tags WHERE run_id = $1 AND key = 't'", live) == "v"


async def test_a_flush_of_points_alone_refuses_deleted_and_missing_runs_and_keeps_the_rest(pool):
    # Points alone: the runs are checked in the statement that bumps their versions, after the
    # COPY; a refused run has the flush rolled back and done again with the runs checked first.
    writer = BatchWriter(pool)
    live, deleted = await new_run(pool), await new_run(pool, "deleted")
    missing = uuid.uuid4().hex
    assert await writer.write_batch([RunWrite(live, metrics=[MetricPoint("m", 0.5, 9, 0)])]) == [None]
    assert await pool.fetchval("SELECT version FROM run_versions WHERE run_id = $1", live) == 1
    outcomes = await writer.write_batch([
        RunWrite(live, metrics=[MetricPoint("m", 1.0, 10, 1)]),
        RunWrite(deleted, metrics=[MetricPoint("m", 2.0, 11, 0)]),
        RunWrite(missing, metrics=[MetricPoint("m", 3.0, 12, 0)]),
        RunWrite(live, metrics=[MetricPoint("n", 4.0, 13, 0)]),
    ])
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], InvalidParameter)
    assert outcomes[1].message == f"The run {deleted} must be in the 'active' state. Current state is deleted."
    assert isinstance(outcomes[2], NotFound)
    points = await pool.fetch("SELECT key, step, value FROM metric_points WHERE run_id = $1 ORDER BY 1, 2", live)
    assert [tuple(p) for p in points] == [("m", 0, 0.5), ("m", 1, 1.0), ("n", 0, 4.0)]
    # Nothing is left of the attempt rolled back: a chunk a key a flush, none for the refused runs.
    chunks = await pool.fetch("SELECT run_id, key, point_count FROM metric_chunks ORDER BY key, first_step")
    assert [(c["run_id"].hex, c["key"], c["point_count"]) for c in chunks] == [
        (live, "m", 1), (live, "m", 1), (live, "n", 1)]
    assert await pool.fetchval("SELECT version FROM run_versions WHERE run_id = $1", live) == 2
    assert await pool.fetchval("SELECT count(*) FROM run_versions WHERE run_id = $1", deleted) == 0
    assert await pool.fetchval("SELECT count(*) FROM metric_summaries WHERE run_id <> $1", live) == 0


async def test_conflicting_params_inside_one_batch_first_wins(pool):
    writer = BatchWriter(pool)
    run = await new_run(pool)
    outcomes = await writer.write_batch(
        [RunWrite(run, params=[KeyValue("k", "a")]), RunWrite(run, params=[KeyValue("k", "a")]),
         RunWrite(run, params=[KeyValue("k", "b")], is_batch=True)]
    )
    assert outcomes[:2] == [None, None]
    assert outcomes[2].message == (
        "Changing param values is not allowed. Params were already logged="
        f"'[{{'key': 'k', 'old_value': 'a', 'new_value': 'b'}}]' for run ID='{run}'."
    )


async def test_duplicate_points_are_stored_once_and_counted_once(pool):
    writer = BatchWriter(pool)
    run = await new_run(pool)
    point = MetricPoint("m", 1.0, 5, 1)
    nan = MetricPoint("m", float("nan"), 6, 1)
    assert await writer.write_batch([RunWrite(run, metrics=[point, point, nan])]) == [None]
    # A retry of a write already stored takes the slow path and stores nothing twice.
    assert await writer.write_batch([RunWrite(run, metrics=[point, nan, MetricPoint("m", 0.5, 7, 0)])]) == [None]
    assert await pool.fetchval("SELECT count(*) FROM metric_points WHERE run_id = $1", run) == 3
    summary = await pool.fetchrow("SELECT * FROM metric_summaries WHERE run_id = $1", run)
    assert summary["point_count"] == 3
    assert (summary["min_value"], summary["max_value"]) == (0.5, 1.0)
    assert (summary["step"], summary["timestamp"]) == (1, 6) and math.isnan(summary["value"])


async def test_summaries_match_a_recomputation_after_concurrent_batches(pool):
    writer = BatchWriter(pool)
    runs = [await new_run(pool) for _ in range(4)]
    rng = random.Random(7)
    batches = []
    for _ in range(24):
        writes = []
        for _ in range(rng.randint(1, 6)):
            run = rng.choice(runs)
            points = [
                MetricPoint(rng.choice("abc"), rng.choice([rng.uniform(-5, 5), float("nan"), 0.0]),
                            rng.randint(0, 50), rng.randint(0, 20))
                for _ in range(rng.randint(1, 40))
            ]
            writes.append(RunWrite(run, metrics=points))
        batches.append(writes)
    results = await asyncio.gather(*[writer.write_batch(b) for b in batches])
    assert all(outcome is None for result in results for outcome in result)

    await assert_summaries_recomputed(pool)


async def test_interleaved_appends_and_retries_keep_every_point_once(pool):
    """Flushes of one key from two gateways: steps interleave, some batches arrive twice."""
    writers = [BatchWriter(pool), BatchWriter(pool)]
    run = await new_run(pool)
    batches = []
    for round_number in range(40):
        for lane in range(2):
            first = round_number * 20 + lane * 10
            points = [MetricPoint(key, float(step) / 7, 1000 + step, step)
                      for step in range(first, first + 10) for key in ("loss", "acc")]
            batches.append((lane, [RunWrite(run, metrics=points)]))
    sent = batches + [batches[index] for index in range(3, len(batches), 7)]
    random.Random(3).shuffle(sent)
    results = await asyncio.gather(*[writers[lane].write_batch(writes) for lane, writes in sent])
    assert all(outcome is None for result in results for outcome in result)
    assert await pool.fetchval("SELECT count(*) FROM metric_points WHERE run_id = $1", run) == 2 * 800
    await assert_summaries_recomputed(pool)


async def assert_summaries_recomputed(pool):
    """Every summary row equals the one recomputed from the stored points."""
    expected = await pool.fetch(
        """SELECT run_id, key, count(*) AS point_count,
                  min(value) FILTER (WHERE value <> 'NaN') AS min_value,
                  max(value) FILTER (WHERE value <> 'NaN') AS max_value,
                  (array_agg(step ORDER BY step DESC, timestamp DESC, value DESC))[1] AS step,
                  (array_agg(timestamp ORDER BY step DESC, timestamp DESC, value DESC))[1] AS timestamp,
                  (array_agg(value ORDER BY step DESC, timestamp DESC, value DESC))[1] AS value
           FROM metric_points GROUP BY run_id, key ORDER BY run_id, key"""
    )
    actual = await pool.fetch(
        "SELECT run_id, key, point_count, min_value, max_value, step, timestamp, value "
        "FROM metric_summaries ORDER BY run_id, key"
    )

    def normal(rows):
        return [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row) for row in rows]

    assert normal(actual) == normal(expected)
    assert len(actual) > 0


async def test_a_stored_point_sent_again_with_its_model_takes_the_model_once(pool):
    """log_model re-sends a run's metrics naming the logged model; the point is linked, not doubled."""
    writer = BatchWriter(pool)
    run_id = await new_run(pool)
    assert await writer.write_batch([RunWrite(run_id, metrics=[MetricPoint("loss", 0.25, 1, 0)])]) == [None]
    again = RunWrite(run_id, metrics=[MetricPoint("loss", 0.25, 1, 0, model_id="m-1"),
                                      MetricPoint("loss", 0.25, 1, 0),
                                      MetricPoint("loss", 0.5, 2, 1, model_id="m-1")])
    assert await writer.write_batch([again]) == [None]
    rows = await pool.fetch("SELECT step, model_id FROM metric_points WHERE run_id = $1 ORDER BY step", run_id)
    assert [tuple(r) for r in rows] == [(0, "m-1"), (1, "m-1")]
    summary = await pool.fetchrow("SELECT point_count, value FROM metric_summaries WHERE run_id = $1", run_id)
    assert tuple(summary) == (2, 0.5)


async def test_a_flushs_statements_are_planned_once_not_at_every_flush(fresh_database_url):
    # A flush's statements join arrays of keys to primary keys; planning them again at each
    # flush's bind was PostgreSQL's work in the middle of every flush.
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        writer = BatchWriter(pool)
        run_id = await new_run(pool)
        for flush in range(8):
            points = [MetricPoint(f"m{k}", float(flush), 1000 + flush, flush) for k in range(3)]
            with_param = [KeyValue(f"p{flush}", "v")] if flush % 2 else []
            assert await writer.write_batch([RunWrite(run_id, metrics=points, params=with_param)]) == [None]
        plans = await pool.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement ~ 'metric_summaries|run_versions|INTO params'"
        )
    finally:
        await pool.close()
    assert len(plans) >= 3
    assert all(row["custom_plans"] == 0 for row in plans), [tuple(row) for row in plans]
    assert sum(row["generic_plans"] for row in plans) >= 8
