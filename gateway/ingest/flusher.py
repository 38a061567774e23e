"""The flusher: drains the accumulator into the sink, one transaction per flush (group commit).

A flush starts as soon as something is pending and a flush slot is free;
whatever arrives meanwhile rides in the next one. A flush whose database is
unreachable is retried with backoff, holding its writes, until it commits:
writers past their deadline have been told 503 by then, the rest are answered
when it lands.

A flush of several runs that fails so is split in two by run, and each half
is flushed on its own, down to a run at a time: when only part of the database
is unreachable (a Citus worker holding some runs' shards), the writes to the
other runs commit at once instead of waiting behind the ones that cannot. The
halves go on as tasks of their own and give the flush slot back, so new writes
to the reachable runs keep flushing while the others wait for the database.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Protocol

from gateway import telemetry
from gateway.errors import GatewayError, TransientStoreError
from gateway.ingest.accumulator import Accumulator, Pending
from gateway.model import RunWrite

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where flushes go. ``store.writer.BatchWriter`` is the real one."""

    async def write_batch(self, writes: Sequence[RunWrite]) -> Sequence[GatewayError | None]:
        """Commit the writes in one transaction; one outcome per write (None = committed).

        Raises TransientStoreError when nothing committed and the batch may be retried.
        """
        ...


class Flusher:
    """Runs the drain loop as a task; ``stop()`` flushes what is left.

    Args:
        accumulator: the buffers to drain.
        sink: where batches are written.
        concurrency: flushes in flight at once.
        max_entities: upper bound on entities per flush.
        linger: seconds to wait for more writes before draining (0: none).
        backoff_max: longest pause between retries of a failing flush.
    """

    def __init__(
        self,
        accumulator: Accumulator,
        sink: Sink,
        *,
        concurrency: int = 2,
        max_entities: int = 50_000,
        linger: float = 0.0,
        backoff_max: float = 5.0,
    ):
        self._accumulator = accumulator
        self._sink = sink
        self._slots = asyncio.Semaphore(concurrency)
        self._max_entities = max_entities
        self._linger = linger
        self._backoff_max = backoff_max
        self._flushes: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-flusher")
        self._task.add_done_callback(self._on_loop_done)

    def _on_loop_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            error: BaseException = RuntimeError("flusher cancelled")
        elif task.exception() is not None:
            error = task.exception()  # type: ignore[assignment]
            log.error("flusher stopped unexpectedly", exc_info=error)
        else:
            return
        # Nobody would ever resolve the waiting writers: fail them now.
        self._accumulator.fail_all(error)

    async def _run(self) -> None:
        accumulator = self._accumulator
        while True:
            await accumulator.wait_drainable()
            await self._slots.acquire()
            trigger = "immediate"
            if self._linger > 0 and not accumulator.closed:
                await asyncio.sleep(self._linger)
                trigger = "linger"
            batch = accumulator.drain(self._max_entities)
            if not batch:
                self._slots.release()
                continue
            if sum(p.write.entity_count for p in batch) >= self._max_entities:
                trigger = "size"
            telemetry.FLUSHES.labels(trigger).inc()
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task) -> None:
        self._flushes.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            # The flush's own bookkeeping broke: its writers would wait forever.
            log.error("flush task failed", exc_info=task.exception())
            self._accumulator.fail_all(task.exception())

    async def _flush(self, batch: list[Pending]) -> None:
        telemetry.FLUSH_ENTITIES.observe(sum(p.write.entity_count for p in batch))
        await self._commit(batch, time.perf_counter())

    async def _commit(self, batch: list[Pending], started: float) -> None:
        """Write ``batch`` until it commits (or fails for good), then answer its writers."""
        writes = [p.write for p in batch]
        attempt = 0
        while True:
            try:
                outcomes = list(await self._sink.write_batch(writes))
                if len(outcomes) != len(writes):
                    raise RuntimeError(f"sink answered {len(outcomes)} outcomes for {len(writes)} writes")
                break
            except TransientStoreError as exc:
                attempt += 1
                telemetry.DB_RETRIES.inc()
                telemetry.DATABASE_ERRORS.labels("unreachable").inc()
                halves = _split_by_run(batch)
                if halves is not None:
                    # Part of the database may still answer: each half on its own.
                    for half in halves:
                        self._spawn_part(half, started)
                    return
                pause = min(self._backoff_max, 0.05 * 2**attempt) * (0.5 + random.random() / 2)
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("flush of %d writes failed (%s); retrying", len(writes), type(exc).__name__)
                await asyncio.sleep(pause)
            except Exception:
                # Not a connectivity problem: retrying would fail the same way.
                # The writers are told (500); nothing of this batch committed.
                log.exception("flush of %d writes failed", len(writes))
                telemetry.DATABASE_ERRORS.labels("failed").inc()
                outcomes = [GatewayError("The write could not be stored.", "INTERNAL_ERROR")] * len(writes)
                break
        telemetry.FLUSH_SECONDS.observe(time.perf_counter() - started)
        committed = [w for w, outcome in zip(writes, outcomes) if outcome is None]
        telemetry.POINTS_INGESTED.inc(sum(len(w.metrics) for w in committed))
        params = sum(len(w.params) for w in committed)
        tags = sum(len(w.tags) for w in committed)
        if params:
            telemetry.ENTITIES_INGESTED.labels("param").inc(params)
        if tags:
            telemetry.ENTITIES_INGESTED.labels("tag").inc(tags)
        self._accumulator.complete(batch, outcomes)

    def _spawn_part(self, part: list[Pending], started: float) -> None:
        task = asyncio.get_running_loop().create_task(self._commit(part, started))
        self._flushes.add(task)
        task.add_done_callback(self._part_done)

    def _part_done(self, task: asyncio.Task) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("flush task failed", exc_info=task.exception())
            self._accumulator.fail_all(task.exception())

    async def stop(self, timeout: float = 60.0) -> bool:
        """Refuse new writes, flush everything buffered, then stop the loop.

        Returns:
            True if everything was flushed within ``timeout`` seconds.
        """
        accumulator = self._accumulator
        accumulator.close()
        deadline = time.monotonic() + timeout
        while not accumulator.is_empty and time.monotonic() < deadline:
            if self._task is None or self._task.done():
                break
            await asyncio.sleep(0.01)
        flushed = accumulator.is_empty
        if self._task is not None:
            self._task.remove_done_callback(self._on_loop_done)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if not flushed:
            log.error("stopping with %d entities not flushed", accumulator.pending_entities)
            for task in list(self._flushes):
                task.cancel()
            accumulator.fail_all(RuntimeError("stopped before flushing"))
        return flushed


def _split_by_run(batch: list[Pending]) -> tuple[list[Pending], list[Pending]] | None:
    """The batch in two halves by run (a run's writes stay together, in order); None for one run."""
    runs = sorted({p.write.run_id for p in batch})
    if len(runs) < 2:
        return None
    first = set(runs[: len(runs) // 2])
    return [p for p in batch if p.write.run_id in first], [p for p in batch if p.write.run_id not in first]
