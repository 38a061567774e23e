"""Per-run buffers of writes waiting for a flush, with bounds and backpressure.

The accumulator does no I/O: futures, deques and a monotonic clock. Writers
``submit`` and get a future that the flusher resolves once the write
committed (or failed on its own). The flusher ``drain``s whole writes, and
takes a run's writes only while no flush holds the run: its params and tags
land in the order they arrived, and two flushes of this process never wait for
each other's locks on the run's rows. Under a flood of log-batch calls to one
run, the writes that arrive while a flush is in flight ride the next one
together, so a flush carries more points as the flood grows. (Letting a run's
points-only writes ride a second flush at once made the flushes queue on those
locks instead, and each re-read what the other had just written: see
docs/benchmarks-history.md, "log-batch as columns, one flush a run at a time".)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from gateway import telemetry
from gateway.errors import GatewayError, Overloaded, Unavailable
from gateway.model import RunWrite


@dataclass(slots=True, eq=False)
class Pending:
    """A write in the accumulator and the future its writer awaits."""

    write: RunWrite
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Bounds:
    """Limits on what may be pending (buffered or in a flush not yet committed)."""

    max_pending_entities: int
    max_pending_bytes: int
    max_open_runs: int


class Accumulator:
    """Buffers writes per run and hands them to the flusher in batches.

    Args:
        bounds: the pending limits; past them ``submit`` waits for room.
    """

    def __init__(self, bounds: Bounds):
        self.bounds = bounds
        self._buffers: dict[str, deque[Pending]] = {}
        # Per run, its writes in flushes not yet complete (from one flush or several).
        self._in_flight: dict[str, set[Pending]] = {}
        self.pending_entities = 0
        self.pending_bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._failure: BaseException | None = None
        # Read when /metrics is scraped instead of set on every write.
        telemetry.PENDING_POINTS.set_function(lambda: self.pending_entities)
        telemetry.PENDING_BYTES.set_function(lambda: self.pending_bytes)
        telemetry.OPEN_RUNS.set_function(lambda: len(self._buffers))

    # ---- writers ----------------------------------------------------------------------

    def _fits(self, write: RunWrite) -> bool:
        if self.pending_entities == 0:
            return True  # a lone write always fits, so nothing can wait forever
        if self.pending_entities + write.entity_count > self.bounds.max_pending_entities:
            return False
        if self.pending_bytes + write.size_bytes > self.bounds.max_pending_bytes:
            return False
        if write.run_id not in self._buffers and len(self._buffers) >= self.bounds.max_open_runs:
            return False
        return True

    async def submit(self, write: RunWrite, deadline: float) -> asyncio.Future:
        """Buffer ``write``; wait for room until ``deadline`` (monotonic seconds) if full.

        Returns:
            a future resolved with None once the write committed, or with the
            GatewayError that refused it.
        Raises:
            Overloaded: still no room at the deadline (retriable, 429).
            Unavailable: the gateway is shutting down or its flusher stopped (503).
        """
        self._check_open()
        if not self._fits(write):
            telemetry.BACKPRESSURE_WAITS.inc()
            while not self._fits(write):
                self._room.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Overloaded(
                        "Too many writes are pending; the gateway is applying backpressure. Retry later.",
                        retry_after=1.0,
                    )
                try:
                    await asyncio.wait_for(self._room.wait(), remaining)
                except TimeoutError:
                    continue
                self._check_open()
        future = asyncio.get_running_loop().create_future()
        pending = Pending(write, future)
        buffer = self._buffers.get(write.run_id)
        if buffer is None:
            buffer = self._buffers[write.run_id] = deque()
        buffer.append(pending)
        self.pending_entities += write.entity_count
        self.pending_bytes += write.size_bytes
        if write.run_id not in self._in_flight:
            self._ready.set()
        return future

    def _check_open(self) -> None:
        if self._failure is not None:
            raise Unavailable("The gateway cannot store writes right now.", retry_after=5.0)
        if self._closed:
            raise Unavailable("The gateway is shutting down.", retry_after=1.0)

    def futures_of_run(self, run_id: str) -> list[asyncio.Future]:
        """Futures of the run's writes not yet committed (to let a read wait for them)."""
        futures = [p.future for p in self._buffers.get(run_id, ())]
        futures += [p.future for p in self._in_flight.get(run_id, ())]
        return futures

    def run_ids(self) -> set[str]:
        """Runs with writes not yet committed."""
        return set(self._buffers) | set(self._in_flight)

    # ---- the flusher ------------------------------------------------------------------

    @property
    def has_drainable(self) -> bool:
        return any(run_id not in self._in_flight for run_id in self._buffers)

    @property
    def is_empty(self) -> bool:
        return not self._buffers and not self._in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_drainable(self) -> None:
        """Return once some run has buffered writes and no flush in flight."""
        while not self.has_drainable:
            self._ready.clear()
            await self._ready.wait()

    def drain(self, max_entities: int) -> list[Pending]:
        """Take whole writes of runs no flush holds, oldest runs first, up to ``max_entities``
        (at least one write).

        Taken writes count as in flight until ``complete`` is called for the batch.
        """
        batch: list[Pending] = []
        taken = 0
        for run_id in list(self._buffers):
            if run_id in self._in_flight:
                continue
            buffer = self._buffers[run_id]
            in_flight = self._in_flight[run_id] = set()
            while buffer and (taken == 0 or taken + buffer[0].write.entity_count <= max_entities):
                pending = buffer.popleft()
                taken += pending.write.entity_count
                in_flight.add(pending)
                batch.append(pending)
            if not buffer:
                del self._buffers[run_id]
            if not in_flight:
                del self._in_flight[run_id]
            if taken >= max_entities:
                break
        return batch

    def complete(self, batch: list[Pending], outcomes: list[GatewayError | None]) -> None:
        """Resolve a flushed batch's futures and free its room."""
        for pending, outcome in zip(batch, outcomes, strict=True):
            future = pending.future
            if not future.done():
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
            self.pending_entities -= pending.write.entity_count
            self.pending_bytes -= pending.write.size_bytes
            in_flight = self._in_flight.get(pending.write.run_id)
            if in_flight is not None:  # None after fail_all
                in_flight.discard(pending)
                if not in_flight:
                    del self._in_flight[pending.write.run_id]
        for run_id in {p.write.run_id for p in batch}:
            if run_id in self._buffers:
                self._ready.set()
        self._room.set()

    def close(self) -> None:
        """Refuse new writes; what is buffered is still flushed."""
        self._closed = True
        self._room.set()
        self._ready.set()

    def fail_all(self, error: BaseException) -> None:
        """Fail every waiting writer: the flusher died and nobody would resolve them."""
        self._failure = error
        for pendings in list(self._buffers.values()) + list(self._in_flight.values()):
            for pending in pendings:
                if not pending.future.done():
                    pending.future.set_exception(
                        Unavailable("The gateway could not store this write.", retry_after=5.0)
                    )
        self._buffers.clear()
        self._in_flight.clear()
        self.pending_entities = 0
        self.pending_bytes = 0
        self._room.set()

