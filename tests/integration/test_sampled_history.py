"""The sampled metric history of the web UI's charts, against MLflow's rule recomputed here.

MLflow cuts a series, in (step, timestamp, value) order, into ``n`` buckets as
ntile does and keeps each bucket's first point, plus the series' last point. The
store places those points in its chunks by their counts and reads them by
subscript; whatever the series' shape (a training loop's steps, steps with gaps,
many points a step, chunks overlapping after out-of-order writes) it must keep
exactly MLflow's points.
"""

from __future__ import annotations

import random

import asyncpg
import pytest

from gateway.model import MetricPoint, RunWrite
from gateway.store.migrations import migrate
from gateway.store.tracking import TrackingStore
from gateway.store.writer import BatchWriter


@pytest.fixture
async def store(fresh_database_url):
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn)
    yield TrackingStore(pool), BatchWriter(pool)
    await pool.close()


async def new_run(store: TrackingStore) -> str:
    return (await store.create_run(experiment_id="0", user_id="", run_name=None, start_time=0, tags=[])).info.run_id


async def log(writer: BatchWriter, run_id: str, points: list[tuple[int, int, float]]) -> None:
    for start in range(0, len(points), 5000):
        chunk = points[start:start + 5000]
        write = RunWrite(run_id, metrics=[MetricPoint("loss", v, t, s) for s, t, v in chunk])
        (result,) = await writer.write_batch([write])
        assert result is None


def mlflow_sample(points: list[tuple[int, int, float]], n: int, low: int, high: int) -> list[tuple[int, int, float]]:
    """MLflow's rule: ntile(n) over the ordered points in [low, high], first of each bucket, last kept."""
    ordered = sorted(p for p in set(points) if low <= p[0] <= high)
    if len(ordered) <= n:
        return ordered
    size, extra = divmod(len(ordered), n)
    kept = [ordered[b * size + min(b, extra)] for b in range(n)]
    if kept[-1] != ordered[-1]:
        kept[-1] = ordered[-1]
    return kept


async def sample(store: TrackingStore, run_id: str, n: int, low: int | None = None, high: int | None = None):
    metrics = await store.get_metric_history_sampled([run_id], "loss", max_results=n, start_step=low, end_step=high)
    return [(m.step, m.timestamp, m.value) for m in metrics]


# (100,000, 50): a few points a chunk, read by subscript; the others read chunks whole.
@pytest.mark.parametrize(
    "count, n", [(10_000, 320), (10_007, 320), (5_000, 2500), (641, 320), (320, 320), (100_000, 50)]
)
async def test_a_training_loop_keeps_mlflows_points(store, count, n):
    tracking, writer = store
    run_id = await new_run(tracking)
    points = [(step + 3, 1_000 + step, random.random()) for step in range(count)]
    await log(writer, run_id, points)
    assert await sample(tracking, run_id, n) == mlflow_sample(points, n, -(2**63), 2**63)
    assert await sample(tracking, run_id, n, 100, 4000) == mlflow_sample(points, n, 100, 4000)


async def test_a_series_crowded_onto_few_steps_is_sampled_by_row(store):
    tracking, writer = store
    run_id = await new_run(tracking)
    points = [(step % 7, 1_000 + step, float(step)) for step in range(3_000)]
    await log(writer, run_id, points)
    assert await sample(tracking, run_id, 100) == mlflow_sample(points, 100, -(2**63), 2**63)


async def test_steps_with_gaps_keep_mlflows_points(store):
    tracking, writer = store
    run_id = await new_run(tracking)
    steps = sorted(random.Random(7).sample(range(1_000_000), 20_000))
    points = [(step, step, float(step)) for step in steps]
    await log(writer, run_id, points)
    assert await sample(tracking, run_id, 320) == mlflow_sample(points, 320, -(2**63), 2**63)
    assert await sample(tracking, run_id, 320, 250_000, 600_000) == mlflow_sample(points, 320, 250_000, 600_000)


async def test_out_of_order_writes_keep_mlflows_points(store):
    """Late points land in chunks whose step ranges overlap the earlier ones'."""
    tracking, writer = store
    run_id = await new_run(tracking)
    rng = random.Random(11)
    points = [(rng.randrange(5_000), rng.randrange(100), rng.choice([0.5, 1.5, float(rng.random())]))
              for _ in range(12_000)]
    for start in range(0, len(points), 700):
        await log(writer, run_id, points[start:start + 700])
    for n, low, high in ((320, -(2**63), 2**63 - 1), (1000, 1000, 2000), (7, 4999, 4999)):
        assert await sample(tracking, run_id, n, low, high) == mlflow_sample(points, n, low, high)


@pytest.mark.parametrize("count", [3, 12])  # 12: the probes are shared out over two connections
async def test_several_runs_and_a_missing_one(store, count):
    tracking, writer = store
    runs = [await new_run(tracking) for _ in range(count)]
    histories = {}
    for index, run_id in enumerate(runs):
        histories[run_id] = [(s, s, float(index)) for s in range(1_000 * (index % 3 + 1))]
        await log(writer, run_id, histories[run_id])
    metrics = await tracking.get_metric_history_sampled(runs, "loss", max_results=50)
    assert [m.run_id for m in metrics] == sorted(m.run_id for m in metrics)
    for run_id in runs:
        sampled = [(m.step, m.timestamp, m.value) for m in metrics if m.run_id == run_id]
        assert sampled == mlflow_sample(histories[run_id], 50, -(2**63), 2**63)
    with pytest.raises(Exception, match="Run with id=0{32} not found"):
        await tracking.get_metric_history_sampled([runs[0], "0" * 32], "loss", max_results=50)
