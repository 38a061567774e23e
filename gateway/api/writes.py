"""The write path between the handlers and the accumulator: run checks, ack modes, deadlines."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.errors import GatewayError, Unavailable
from gateway.ingest import Accumulator
from gateway.mlflow import runs
from gateway.model import RunWrite
from gateway.store.tracking import TrackingStore

log = logging.getLogger(__name__)

_KNOWN_RUNS_LIMIT = 200_000


class WritePath:
    """Checks a write's run, buffers it, and (in commit mode) waits for its commit.

    Args:
        store: for run lookups.
        accumulator: where writes are buffered.
        ack: "commit" (answer once committed) or "accept" (answer once buffered).
        deadline: seconds a write may wait for room and for its commit.
    """

    def __init__(self, store: TrackingStore, accumulator: Accumulator, *, ack: str, deadline: float):
        self._store = store
        self._accumulator = accumulator
        self._ack = ack
        self._deadline = deadline
        # Runs seen active. Only a shortcut: each flush re-checks the run's state
        # in the database under a lock, which also catches deletes made elsewhere.
        self._active_runs: set[str] = set()

    def forget_run(self, run_id: str) -> None:
        """Drop a run from the active cache (after it was deleted or restored)."""
        self._active_runs.discard(run_id)

    def forget_all_runs(self) -> None:
        """Drop every run from the active cache (after an experiment was deleted)."""
        self._active_runs.clear()

    async def check_run_active(self, run_id: str) -> None:
        """Raise MLflow's error if the run does not exist or is not active."""
        if run_id in self._active_runs:
            return
        runs.check_run_writable(run_id, await self._store.run_lifecycle_stage(run_id))
        if len(self._active_runs) >= _KNOWN_RUNS_LIMIT:
            self._active_runs.clear()
        self._active_runs.add(run_id)

    async def submit(self, write: RunWrite) -> None:
        """Buffer ``write``; return once it committed (in accept mode: once buffered, unless it carries params).

        Raises:
            GatewayError: MLflow's error for a refused write; Unavailable (503) when it
                could not be committed before the deadline; Overloaded (429) under backpressure.
        """
        await self.check_run_active(write.run_id)
        deadline = time.monotonic() + self._deadline
        future = await self._accumulator.submit(write, deadline)
        if self._ack == "accept" and not write.params:
            # Params are write-once, decided in the database: a write carrying
            # one is answered once committed, so a conflict gets MLflow's error.
            future.add_done_callback(_log_refused_after_accept)
            return
        if not await _done_within(future, deadline - time.monotonic()):
            # The write stays with the flusher and may still land; the client was
            # not told it did, so it retries (an identical point is stored once).
            future.add_done_callback(_consume_outcome)
            raise Unavailable(
                "The write could not be committed in time: the database is unavailable or overloaded. "
                "Retry later.",
                retry_after=2.0,
            )
        future.result()  # the write's own error, if the flush refused it

    async def settle_run(self, run_id: str) -> None:
        """Wait until the run's accepted writes are committed, so a read sees them."""
        futures = self._accumulator.futures_of_run(run_id)
        if futures:
            await asyncio.wait(futures, timeout=self._deadline)

    async def settle_all(self) -> None:
        """Wait until every write accepted so far is committed (for searches)."""
        if self._ack != "accept":
            return
        futures = [f for run_id in self._accumulator.run_ids() for f in self._accumulator.futures_of_run(run_id)]
        if futures:
            await asyncio.wait(futures, timeout=self._deadline)


async def _done_within(future: asyncio.Future, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``future``; whether it is done. Never cancels it.

    The flusher owns the write: a caller that gives up, or is cancelled, leaves
    the future to it. (``wait_for`` over ``shield`` does the same with two more
    futures and their callbacks on every write.)
    """
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(max(seconds, 0.001), wake)
    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()


def _consume_outcome(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _log_refused_after_accept(future: asyncio.Future) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        code = error.error_code if isinstance(error, GatewayError) else "INTERNAL_ERROR"
        # The message may quote the client's values; the code says enough for the log.
        log.warning("accepted write refused at flush", extra={"error_code": code})
