"""The sampled metric history of the web UI's charts, against MLflow's rule recomputed here.

MLflow cuts a series, in (step, timestamp, value) order, into ``n`` buckets as
ntile does and keeps each bucket's first point, plus the series' last point. The
store probes by step where a series spans enough steps; on a training loop's
steps (one point a step, no gaps) that must keep exactly MLflow's points, and a
series crowded onto few steps is sampled by row as MLflow does.
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


@pytest.mark.parametrize("count, n", [(10_000, 320), (10_007, 320), (5_000, 2500), (641, 320), (320, 320)])
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


async def test_steps_with_gaps_are_sampled_across_their_range(store):
    tracking, writer = store
    run_id = await new_run(tracking)
    steps = sorted(random.Random(7).sample(range(1_000_000), 20_000))
    points = [(step, step, float(step)) for step in steps]
    await log(writer, run_id, points)
    sampled = await sample(tracking, run_id, 320)
    assert 300 <= len(sampled) <= 320
    assert sampled == sorted(set(sampled))
    assert sampled[0] == points[0] and sampled[-1] == points[-1]
    assert set(sampled) <= set(points)
    # each probe lands within one bucket's worth of steps of its neighbours
    gaps = [b[0] - a[0] for a, b in zip(sampled, sampled[1:])]
    assert max(gaps) < 2 * (1_000_000 // 320)


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
