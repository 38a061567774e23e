"""`gateway compact` killed with SIGKILL in the middle of its work loses and doubles nothing,
and a second run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest

from gateway.model import MetricPoint, RunWrite
from gateway.store.migrations import migrate
from gateway.store.writer import BatchWriter
from tests.pg import run_apart

pytestmark = pytest.mark.timeout(300)

RUNS, KEYS, FLUSHES, STEPS = 20, 10, 60, 100  # 1.2 million points in 12,000 series' small chunks


async def backlog(url: str) -> list[str]:
    """Runs whose series each landed as ``FLUSHES`` small chunks, one per flush."""
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
        await conn.executemany(
            "INSERT INTO runs (run_id, experiment_id, start_time) VALUES ($1, 0, 0)", [(r,) for r in run_ids])
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        writer = BatchWriter(pool)
        for flush in range(FLUSHES):
            writes = [
                RunWrite(run_id, metrics=[
                    MetricPoint(f"k{key}", step / 7, 1_000 + step, step)
                    for key in range(KEYS) for step in range(flush * STEPS, (flush + 1) * STEPS)
                ])
                for run_id in run_ids
            ]
            assert set(await writer.write_batch(writes)) == {None}
    finally:
        await pool.close()
    return run_ids


async def state(url: str) -> tuple[list, list, int]:
    """Every point, every summary, and how many small chunks there are."""
    conn = await asyncpg.connect(url)
    try:
        points = await conn.fetch(
            "SELECT run_id, key, count(*), count(DISTINCT step), sum(value), min(timestamp), max(timestamp) "
            "FROM metric_points GROUP BY run_id, key ORDER BY run_id, key")
        summaries = await conn.fetch("SELECT * FROM metric_summaries ORDER BY run_id, key")
        small = await conn.fetchval("SELECT count(*) FROM metric_chunks WHERE NOT sealed")
        return [tuple(r) for r in points], [tuple(r) for r in summaries], small
    finally:
        await conn.close()


async def small_chunks(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM metric_chunks WHERE NOT sealed")
    finally:
        await conn.close()


def compact(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "compact", "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )


def test_sigkill_mid_compaction_loses_and_doubles_nothing(fresh_database_url):
    url = fresh_database_url
    run_apart(backlog(url))
    points, summaries, small = run_apart(state(url))
    assert small == RUNS * KEYS * FLUSHES
    assert {row[2] for row in points} == {FLUSHES * STEPS}

    process = compact(url)
    deadline = time.monotonic() + 120
    while run_apart(small_chunks(url)) == small:  # killed once the first batches have committed
        assert process.poll() is None and time.monotonic() < deadline, "compact ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    after_kill = run_apart(state(url))
    assert 0 < after_kill[2] < small, "the kill should land mid-way"
    assert after_kill[:2] == (points, summaries)

    finished = subprocess.run(
        [sys.executable, "-m", "gateway", "compact", "--database-url", url],
        capture_output=True, text=True, timeout=240,
    )
    assert finished.returncode == 0, finished.stderr
    assert "small chunks merged" in finished.stdout
    final = run_apart(state(url))
    assert final[:2] == (points, summaries)
    assert final[2] == RUNS * KEYS  # one small chunk a series is left: 6,000 points = 4,096 sealed + 1,904
