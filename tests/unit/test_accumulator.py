"""The accumulator and flusher with an in-memory sink: batching, ordering, bounds, retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway import telemetry
from gateway.errors import GatewayError, InvalidParameter, Overloaded, TransientStoreError, Unavailable
from gateway.ingest import Accumulator, Flusher
from gateway.ingest.accumulator import Bounds
from gateway.model import KeyValue, MetricPoint, RunWrite


class MemorySink:
    """Records batches; can be told to fail transiently, to refuse writes, or to hold."""

    def __init__(self):
        self.batches: list[list[RunWrite]] = []
        self.transient_failures = 0
        self.refuse: set[int] = set()  # ids of writes to refuse
        self.gate = asyncio.Event()
        self.gate.set()
        self.started: list[list[RunWrite]] = []  # batches as they reach the sink, before the gate
        self.concurrent = 0
        self.max_concurrent = 0

    async def write_batch(self, writes):
        self.started.append(list(writes))
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await self.gate.wait()
            if self.transient_failures:
                self.transient_failures -= 1
                raise TransientStoreError("connection refused")
            self.batches.append(list(writes))
            return [InvalidParameter("refused") if id(w) in self.refuse else None for w in writes]
        finally:
            self.concurrent -= 1


def write(run: str, points: int = 1, size: int = 100) -> RunWrite:
    return RunWrite(run, metrics=[MetricPoint("m", float(i), i, i) for i in range(points)], size_bytes=size)


def bounds(entities=10_000, size=10_000_000, runs=1000) -> Bounds:
    return Bounds(max_pending_entities=entities, max_pending_bytes=size, max_open_runs=runs)


def deadline(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


async def started(accumulator, sink, **options) -> Flusher:
    flusher = Flusher(accumulator, sink, backoff_max=0.01, **options)
    flusher.start()
    return flusher


async def test_writes_arriving_during_a_flush_ride_the_next_one():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink, concurrency=1)
    first = await accumulator.submit(write("a"), deadline())
    await asyncio.sleep(0.01)  # the first flush is now waiting at the gate
    rest = [await accumulator.submit(write(run), deadline()) for run in "abcab"]
    sink.gate.set()
    await asyncio.gather(first, *rest)
    assert [len(batch) for batch in sink.batches] == [1, 5]
    await flusher.stop()


class OverlapSink(MemorySink):
    """Holds each batch a moment, so flushes overlap; notes runs found in two flushes at once."""

    def __init__(self):
        super().__init__()
        self.flying: list[list[RunWrite]] = []
        self.overlapped_runs: set[str] = set()
        self.overlapping_flushes = 0

    async def write_batch(self, writes):
        runs = {w.run_id for w in writes}
        for other in self.flying:
            self.overlapping_flushes += 1
            self.overlapped_runs |= runs & {w.run_id for w in other}
        self.flying.append(writes)
        try:
            await asyncio.sleep(0.002)
            return await super().write_batch(writes)
        finally:
            self.flying.remove(writes)


def tagged(run: str, value: str) -> RunWrite:
    return RunWrite(run, tags=[KeyValue("t", value)], size_bytes=100)


async def test_a_runs_writes_land_in_order_one_flush_at_a_time_while_runs_flush_side_by_side():
    accumulator, sink = Accumulator(bounds()), OverlapSink()
    flusher = await started(accumulator, sink, concurrency=4, max_entities=6)
    writes = [tagged(f"run{i % 3}", str(i)) if i % 5 == 0 else write(f"run{i % 3}", points=3) for i in range(300)]
    futures = []
    for w in writes:
        futures.append(await accumulator.submit(w, deadline()))
        if len(futures) % 7 == 0:
            await asyncio.sleep(0.001)
    await asyncio.gather(*futures)
    flushed = [w for batch in sink.batches for w in batch]
    assert sorted(map(id, flushed)) == sorted(map(id, writes))  # each write once
    # No run was in two flushes at once, and each run's writes landed in the order sent ...
    assert sink.overlapped_runs == set()
    for run in ("run0", "run1", "run2"):
        assert [w for w in flushed if w.run_id == run] == [w for w in writes if w.run_id == run]
    # ... while flushes of different runs did run side by side.
    assert sink.overlapping_flushes > 0
    await flusher.stop()


async def test_a_runs_writes_wait_for_its_flush_in_flight_while_another_runs_flush_at_once():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink, concurrency=3)
    first = await accumulator.submit(write("a"), deadline())
    await asyncio.sleep(0.01)
    assert sink.concurrent == 1
    points_write, tag_write, other_write = write("a"), tagged("a", "x"), write("b")
    waiting = [await accumulator.submit(w, deadline()) for w in (points_write, tag_write)]
    other = await accumulator.submit(other_write, deadline())
    await asyncio.sleep(0.01)
    assert sink.concurrent == 2
    begun = [id(w) for batch in sink.started for w in batch]
    assert id(other_write) in begun  # only run b's write started
    assert id(points_write) not in begun and id(tag_write) not in begun
    sink.gate.set()
    await asyncio.gather(first, other, *waiting)
    order = [w for batch in sink.batches for w in batch if w.run_id == "a"]
    assert [id(w) for w in order[1:]] == [id(points_write), id(tag_write)]
    assert [len(batch) for batch in sink.batches if batch[0].run_id == "a"] == [1, 2]  # the two waited together
    await flusher.stop()


async def test_pending_gauges_read_the_accumulator_when_scraped():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink, concurrency=1)
    futures = [await accumulator.submit(write(run, points=3, size=1000), deadline()) for run in "aab"]
    await asyncio.sleep(0.01)  # the first flush (runs a and b) waits at the gate; nothing else is buffered
    assert telemetry.REGISTRY.get_sample_value("gateway_pending_entities") == 9
    assert telemetry.REGISTRY.get_sample_value("gateway_pending_bytes") == 3000
    assert telemetry.REGISTRY.get_sample_value("gateway_open_run_buffers") == 0
    late = await accumulator.submit(write("c"), deadline())
    assert telemetry.REGISTRY.get_sample_value("gateway_open_run_buffers") == 1
    sink.gate.set()
    await asyncio.gather(*futures, late)
    assert telemetry.REGISTRY.get_sample_value("gateway_pending_entities") == 0
    await flusher.stop()


async def test_a_refused_write_fails_alone():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    bad = write("a")
    sink.refuse.add(id(bad))
    sink.gate.clear()
    flusher = await started(accumulator, sink)
    good_future = await accumulator.submit(write("a"), deadline())
    bad_future = await accumulator.submit(bad, deadline())
    sink.gate.set()
    assert await good_future is None
    with pytest.raises(InvalidParameter):
        await bad_future
    await flusher.stop()


async def test_transient_failures_are_retried_until_the_batch_commits():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.transient_failures = 3
    flusher = await started(accumulator, sink)
    assert await asyncio.wait_for(await accumulator.submit(write("a", 5), deadline()), 5) is None
    assert len(sink.batches) == 1 and accumulator.pending_entities == 0
    await flusher.stop()


async def test_max_entities_splits_flushes_at_whole_writes():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink, concurrency=1, max_entities=1000)
    futures = [await accumulator.submit(write(f"r{i}", 400), deadline()) for i in range(6)]
    sink.gate.set()
    await asyncio.gather(*futures)
    assert [sum(w.entity_count for w in b) for b in sink.batches] == [800, 800, 800]
    await flusher.stop()


async def test_backpressure_waits_for_room_then_refuses_at_the_deadline():
    accumulator, sink = Accumulator(bounds(entities=10)), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink)
    held = await accumulator.submit(write("a", 8), deadline())
    with pytest.raises(Overloaded) as refused:
        await accumulator.submit(write("b", 5), deadline(0.05))
    assert refused.value.status == 429 and refused.value.retry_after
    waiting = asyncio.ensure_future(accumulator.submit(write("b", 5), deadline(5)))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    sink.gate.set()
    await held
    await (await waiting)
    assert accumulator.pending_entities == 0
    await flusher.stop()


async def test_bytes_and_open_run_bounds_apply_too():
    accumulator = Accumulator(bounds(size=1000, runs=2))
    await accumulator.submit(write("a", size=600), deadline())
    with pytest.raises(Overloaded):
        await accumulator.submit(write("a", size=600), deadline(0.01))
    await accumulator.submit(write("b", size=100), deadline())
    with pytest.raises(Overloaded):
        await accumulator.submit(write("c", size=10), deadline(0.01))


async def test_stop_flushes_everything_then_refuses_new_writes():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink, concurrency=1)
    futures = [await accumulator.submit(write(f"r{i % 5}"), deadline()) for i in range(50)]
    stopping = asyncio.ensure_future(flusher.stop())
    await asyncio.sleep(0.01)
    with pytest.raises(Unavailable):
        await accumulator.submit(write("z"), deadline())
    sink.gate.set()
    assert await stopping is True
    assert all(f.done() and f.exception() is None for f in futures)
    assert sum(len(b) for b in sink.batches) == 50


async def test_a_sink_bug_fails_its_batch_with_internal_error_and_later_writes_go_on():
    class WrongLengthSink(MemorySink):
        async def write_batch(self, writes):
            if not self.batches:
                self.batches.append([])
                return []  # one outcome too few: a bug, not a database outage
            return await super().write_batch(writes)

    accumulator, sink = Accumulator(bounds()), WrongLengthSink()
    flusher = await started(accumulator, sink)
    with pytest.raises(GatewayError) as failed:
        await asyncio.wait_for(await accumulator.submit(write("a"), deadline()), 2)
    assert failed.value.error_code == "INTERNAL_ERROR"
    assert await asyncio.wait_for(await accumulator.submit(write("a"), deadline()), 2) is None
    await flusher.stop()


async def test_a_dead_flusher_fails_every_waiter():
    accumulator, sink = Accumulator(bounds()), MemorySink()
    sink.gate.clear()
    flusher = await started(accumulator, sink, concurrency=1)
    await accumulator.submit(write("a"), deadline())
    await asyncio.sleep(0.01)
    waiting = await accumulator.submit(write("a"), deadline())
    flusher._task.cancel()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(waiting, 2)
    with pytest.raises(Unavailable):
        await accumulator.submit(write("b"), deadline())
