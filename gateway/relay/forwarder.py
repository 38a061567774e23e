"""Delivers the spool upstream: per-run queues, full log-batch calls, retries, dead letters.

Each run with undelivered rows has a queue. A run becomes ready to send when
it holds a full batch, when its oldest row waited ``linger`` seconds, or when a
read of the run needs its writes delivered first. A dispatcher hands ready runs
to at most ``concurrency`` deliveries at once; one run is never in two
deliveries, and a delivery sends the run's oldest rows, so the order of every
run and key is kept. Calls are spaced by the upstream's pacer.

A delivery that meets a 429, a 5xx or an unreachable upstream keeps its batch
and pauses every delivery (Retry-After when given, else exponential backoff),
so an outage of any length only grows the spool. A batch the upstream refuses
is split in halves until the refused entity is alone; it goes to the spool's
dead letters with the upstream's error and the rest is delivered. A refusal of
the run as a whole (unknown, deleted) dead-letters the batch at once.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.mlflow.limits import MAX_ENTITIES_PER_BATCH
from gateway.errors import GatewayError, Unavailable
from gateway.relay import telemetry
from gateway.relay.batching import MAX_BATCH_BYTES, Batch, take_batch
from gateway.relay.knowledge import RunKnowledge
from gateway.relay.spool import KIND_NAMES, DeadLetter, RunBacklog, Spool, entity_json
from gateway.relay.upstream import Answer, Upstream

log = logging.getLogger(__name__)

# A 500 is retried this many times before the batch is treated as refused, so
# one entity the upstream always fails on cannot stall its run forever.
MAX_INTERNAL_ERROR_RETRIES = 5
_BACKOFF_START = 0.1


@dataclass(order=True)
class _Waiter:
    """A request (or a read) waiting until rows first..last of its run are settled."""

    last_seq: int
    first_seq: int = field(compare=False)
    future: asyncio.Future = field(compare=False)


@dataclass
class RunQueue:
    """A run's undelivered rows as the forwarder counts them (the rows live in the spool)."""

    run_id: str
    pending: int = 0
    pending_bytes: int = 0
    last_seq: int = 0
    queued: bool = False
    in_flight: bool = False
    urgent: bool = False
    linger: asyncio.TimerHandle | None = None
    waiters: list[_Waiter] = field(default_factory=list)
    # dead-lettered seqs not yet reported to their waiters, with the upstream's error
    refused: dict[int, GatewayError] = field(default_factory=dict)


class Forwarder:
    """Drains the spool to the upstream.

    Args:
        spool: where the rows are.
        upstream: where they go.
        knowledge: told when the upstream refuses a run as a whole.
        concurrency: deliveries in flight at once.
        linger: seconds a run's rows may wait to fill a batch.
        backoff_max: longest pause between retries.
    """

    def __init__(
        self,
        spool: Spool,
        upstream: Upstream,
        knowledge: RunKnowledge,
        *,
        concurrency: int,
        linger: float,
        backoff_max: float,
    ) -> None:
        self._spool = spool
        self._upstream = upstream
        self._knowledge = knowledge
        self._slots = asyncio.Semaphore(concurrency)
        self._linger = linger
        self._backoff_max = backoff_max
        self._runs: dict[str, RunQueue] = {}
        self._ready: deque[str] = deque()
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._failures = 0
        self._tasks: set[asyncio.Task] = set()
        self._dispatcher: asyncio.Task | None = None
        self._lag_task: asyncio.Task | None = None
        self.spool_bytes = 0
        self.spool_entities = 0

    # ---- lifecycle ------------------------------------------------------------------

    def start(self, backlogs: list[RunBacklog]) -> None:
        """Start delivering, beginning with what the spool held at start (``Spool.open``'s answer)."""
        for backlog in backlogs:
            queue = self._queue(backlog.run_id)
            queue.pending += backlog.count
            queue.pending_bytes += backlog.size
            queue.last_seq = backlog.last_seq
            self._count(backlog.count, backlog.size)
            self._make_ready(queue)
        if self._runs:
            log.info("replaying %d undelivered entities of %d run(s) from the spool", self.spool_entities, len(self._runs))
        self._dispatcher = asyncio.create_task(self._dispatch(), name="relay-dispatcher")
        self._lag_task = asyncio.create_task(self._watch_lag(), name="relay-lag")

    async def stop(self) -> None:
        """Stop delivering; what is left stays in the spool for the next start."""
        for task in (self._dispatcher, self._lag_task, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._dispatcher, self._lag_task, *self._tasks) if t is not None), return_exceptions=True
        )
        for queue in self._runs.values():
            for waiter in queue.waiters:
                if not waiter.future.done():
                    waiter.future.cancel()

    @property
    def upstream_failing(self) -> bool:
        """True while the last upstream call failed (unreachable, 429 or 5xx)."""
        return self._failures > 0

    # ---- called by the write handlers ------------------------------------------------

    def appended(self, run_id: str, first_seq: int, last_seq: int, size: int) -> None:
        """Rows first..last of the run are durable in the spool."""
        queue = self._queue(run_id)
        count = last_seq - first_seq + 1
        queue.pending += count
        queue.pending_bytes += size
        queue.last_seq = max(queue.last_seq, last_seq)
        self._count(count, size)
        if queue.pending >= MAX_ENTITIES_PER_BATCH or queue.pending_bytes >= MAX_BATCH_BYTES or not self._linger:
            self._make_ready(queue)
        elif queue.linger is None and not queue.queued and not queue.in_flight:
            queue.linger = asyncio.get_running_loop().call_later(self._linger, self._linger_ended, run_id)

    async def delivered(self, run_id: str, first_seq: int, last_seq: int, timeout: float) -> None:
        """Wait until rows first..last of the run are settled upstream.

        Raises:
            GatewayError: the upstream refused one of them (its error).
            TimeoutError: not settled within ``timeout``.
        """
        queue = self._runs.get(run_id)
        if queue is None or queue.pending == 0:
            return
        waiter = _Waiter(last_seq, first_seq, asyncio.get_running_loop().create_future())
        bisect.insort(queue.waiters, waiter)
        self._make_ready(queue, urgent=True)
        await asyncio.wait_for(asyncio.shield(waiter.future), timeout)

    async def deliver_run(self, run_id: str, timeout: float) -> None:
        """Deliver every row of the run spooled so far, so that a read sees them.

        Refusals are not the reader's concern (they are dead-lettered).

        Raises:
            Unavailable: not delivered within ``timeout``; a read now would miss
                acknowledged writes, so the client is told to retry instead.
        """
        queue = self._runs.get(run_id)
        if queue is None or queue.pending == 0:
            return
        try:
            await self.delivered(run_id, queue.last_seq, queue.last_seq, timeout)
        except GatewayError:
            pass
        except TimeoutError:
            log.warning("run %s: spooled writes not delivered within %.0fs; the read is refused", run_id, timeout)
            raise Unavailable(
                f"The relay is still delivering run {run_id}'s writes to the upstream tracking server. Retry later.",
                retry_after=5.0,
            ) from None

    async def deliver_all(self, timeout: float) -> None:
        """Deliver every row spooled so far (before a search or an experiment-wide change)."""
        runs = [run_id for run_id, queue in self._runs.items() if queue.pending]
        if runs:
            await asyncio.gather(*(self.deliver_run(run_id, timeout) for run_id in runs))

    # ---- scheduling -------------------------------------------------------------------

    def _queue(self, run_id: str) -> RunQueue:
        queue = self._runs.get(run_id)
        if queue is None:
            queue = self._runs[run_id] = RunQueue(run_id)
        return queue

    def _count(self, entities: int, size: int) -> None:
        self.spool_entities += entities
        self.spool_bytes += size
        telemetry.SPOOL_ENTITIES.set(self.spool_entities)
        telemetry.SPOOL_BYTES.set(self.spool_bytes)

    def _linger_ended(self, run_id: str) -> None:
        queue = self._runs.get(run_id)
        if queue is not None:
            queue.linger = None
            if queue.pending:
                self._make_ready(queue)

    def _make_ready(self, queue: RunQueue, urgent: bool = False) -> None:
        if queue.linger is not None:
            queue.linger.cancel()
            queue.linger = None
        if queue.in_flight:
            queue.urgent = queue.urgent or urgent
            return
        if queue.queued:
            if urgent:
                try:
                    self._ready.remove(queue.run_id)
                except ValueError:
                    pass
                self._ready.appendleft(queue.run_id)
            return
        queue.queued = True
        if urgent:
            self._ready.appendleft(queue.run_id)
        else:
            self._ready.append(queue.run_id)
        self._wake.set()

    async def _dispatch(self) -> None:
        while True:
            while not self._ready:
                self._wake.clear()
                await self._wake.wait()
            await self._slots.acquire()
            if not self._ready:
                self._slots.release()
                continue
            queue = self._runs[self._ready.popleft()]
            queue.queued = False
            queue.in_flight = True
            task = asyncio.create_task(self._deliver(queue), name=f"relay-deliver-{queue.run_id}")
            self._tasks.add(task)
            task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery failed unexpectedly", exc_info=task.exception())

    async def _deliver(self, queue: RunQueue) -> None:
        try:
            await self._pause()
            await self._upstream.pacer.wait()
            rows = await self._spool.head(queue.run_id, MAX_ENTITIES_PER_BATCH)
            if rows:
                await self._send(take_batch(queue.run_id, rows), queue)
            elif queue.pending:
                log.error("run %s: %d entities counted but none in the spool", queue.run_id, queue.pending)
                self._settled(queue, queue.pending, queue.pending_bytes, queue.last_seq, {})
        finally:
            queue.in_flight = False
            if queue.pending:
                if queue.urgent or queue.pending >= MAX_ENTITIES_PER_BATCH or not self._linger or queue.waiters:
                    queue.urgent = False
                    self._make_ready(queue, urgent=bool(queue.waiters))
                else:
                    queue.linger = asyncio.get_running_loop().call_later(
                        self._linger, self._linger_ended, queue.run_id
                    )
            else:
                queue.urgent = False
                if not queue.waiters and queue.linger is None:
                    self._runs.pop(queue.run_id, None)

    async def _send(self, batch: Batch, queue: RunQueue, *, paced: bool = True) -> None:
        """Send one batch until it is settled: delivered, or refused and dead-lettered item by item."""
        internal_errors = 0
        body = batch.body()
        while True:
            if not paced:
                await self._pause()
                await self._upstream.pacer.wait()
            paced = False
            answer = await self._upstream.log_batch(body)
            if answer.status == 200:
                self._succeeded()
                telemetry.BATCH_ENTITIES.observe(len(batch.sent))
                for entity in batch.sent:
                    telemetry.DELIVERED.labels(KIND_NAMES[entity.kind]).inc()
                await self._settle(queue, batch, [])
                return
            if answer.status == 500 and internal_errors < MAX_INTERNAL_ERROR_RETRIES:
                internal_errors += 1
                self._failed(answer)
                continue
            if answer.transient and answer.status != 500:
                self._failed(answer)
                continue
            self._succeeded()  # the upstream answered; it refused this batch
            error_code, message = answer.error()
            if answer.status == 404 or "must be in the 'active' state" in message or len(batch.sent) == 1:
                if len(batch.sent) > 1:
                    self._knowledge.rejected_upstream(batch.run_id, answer.status, error_code)
                dead = [DeadLetter(entity, answer.status, error_code, message) for entity in batch.sent]
                await self._settle(queue, batch, dead)
                return
            older, newer = batch.split()
            await self._send(older, queue, paced=False)
            await self._send(newer, queue, paced=False)
            return

    async def _settle(self, queue: RunQueue, batch: Batch, dead: list[DeadLetter]) -> None:
        await self._spool.settle(batch.run_id, batch.last_seq, dead)
        refused: dict[int, GatewayError] = {}
        for letter in dead:
            entity = letter.entity
            telemetry.DEAD_LETTERS.labels(KIND_NAMES[entity.kind]).inc()
            log.warning(
                "dead letter: run %s %s %s refused upstream with %d %s: %s",
                batch.run_id,
                KIND_NAMES[entity.kind],
                entity_json(entity),
                letter.status,
                letter.error_code,
                letter.message,
            )
            refused[entity.seq] = GatewayError(letter.message, letter.error_code)
        self._settled(queue, len(batch.rows), sum(e.size for e in batch.rows), batch.last_seq, refused)

    def _settled(self, queue: RunQueue, count: int, size: int, through_seq: int, refused: dict) -> None:
        queue.pending -= count
        queue.pending_bytes -= size
        self._count(-count, -size)
        queue.refused.update(refused)
        while queue.waiters and queue.waiters[0].last_seq <= through_seq:
            waiter = queue.waiters.pop(0)
            error = next(
                (queue.refused[s] for s in queue.refused if waiter.first_seq <= s <= waiter.last_seq), None
            )
            if not waiter.future.done():
                if error is not None:
                    waiter.future.set_exception(error)
                    waiter.future.exception()  # the waiter may have timed out already
                else:
                    waiter.future.set_result(None)
        # Refusals older than every remaining waiter can no longer be reported.
        floor = min((w.first_seq for w in queue.waiters), default=through_seq + 1)
        for seq in [s for s in queue.refused if s < floor]:
            del queue.refused[seq]

    # ---- pacing after failures --------------------------------------------------------

    def _succeeded(self) -> None:
        self._failures = 0

    def _failed(self, answer: Answer) -> None:
        telemetry.RETRIES.inc()
        self._failures += 1
        if answer.retry_after is not None:
            pause = min(answer.retry_after, self._backoff_max)
        else:
            pause = min(self._backoff_max, _BACKOFF_START * 2 ** min(self._failures, 20))
            pause *= random.uniform(0.5, 1.0)
        if self._failures in (1, 10) or self._failures % 100 == 0:
            log.warning(
                "upstream log-batch failed (%s); retrying in %.1fs (%d consecutive failures)",
                answer.transport_error or answer.status,
                pause,
                self._failures,
            )
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + pause)

    async def _pause(self) -> None:
        loop = asyncio.get_running_loop()
        while (remaining := self._paused_until - loop.time()) > 0:
            await asyncio.sleep(remaining)

    async def _watch_lag(self) -> None:
        while True:
            oldest = await self._spool.oldest_spooled_at() if self.spool_entities else None
            telemetry.LAG_SECONDS.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)
            await asyncio.sleep(1.0)
