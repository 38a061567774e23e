"""The relay's durable queue: SQLite in WAL mode, owned by one thread, written by group commit.

Every acknowledged write is a row of ``entries`` (one per metric point, param or
tag, in a global sequence) until the upstream accepted it; then the row is
deleted, or moved to ``dead_letters`` with the upstream's error if the upstream
refused it. Commits use ``synchronous=FULL``: the WAL is fsynced before a write
is acknowledged, so neither SIGKILL of the relay nor a power cut loses it.

One thread owns the connection. Callers on the event loop submit jobs; the
thread takes every job queued at that moment and runs them in one transaction
(group commit), so a flood of small writes costs one fsync per group, not per
request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.model import KeyValue, MetricPoint

log = logging.getLogger(__name__)

METRIC, PARAM, TAG = 0, 1, 2
KIND_NAMES = {METRIC: "metric", PARAM: "param", TAG: "tag"}

# Jobs taken into one transaction at most; bounds the latency one group adds.
_MAX_GROUP = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_run ON entries (run_id, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    message TEXT NOT NULL,
    spooled_at REAL NOT NULL,
    dead_at REAL NOT NULL
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode_metric = msgspec.msgpack.Decoder(MetricPoint).decode
_decode_key_value = msgspec.msgpack.Decoder(KeyValue).decode
_json = msgspec.json.Encoder()


class Entity(msgspec.Struct, frozen=True, gc=False):
    """One spooled row: a metric point, a param or a tag of a run, with its sequence number."""

    seq: int
    kind: int
    item: MetricPoint | KeyValue
    size: int
    spooled_at: float


@dataclass(frozen=True)
class RunBacklog:
    """A run's undelivered rows as found in the spool at start."""

    run_id: str
    count: int
    size: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class DeadLetter:
    """An entity the upstream refused, with the upstream's answer."""

    entity: Entity
    status: int
    error_code: str
    message: str


def encode_item(item: MetricPoint | KeyValue) -> bytes:
    """The spool's form of a metric point, param or tag."""
    return _encode(item)


def _decode_item(kind: int, payload: bytes) -> MetricPoint | KeyValue:
    return _decode_metric(payload) if kind == METRIC else _decode_key_value(payload)


class SpoolClosed(Exception):
    """The spool was closed; nothing more can be written to it."""


class Spool:
    """The durable queue of undelivered writes.

    Args:
        directory: where ``spool.sqlite3`` lives (created when missing).
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "spool.sqlite3")
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._next_seq = 1

    # ---- lifecycle ----------------------------------------------------------------

    async def open(self) -> list[RunBacklog]:
        """Open (or create) the spool and start its thread.

        Returns:
            The runs with undelivered rows, to be replayed.
        """
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="relay-spool", daemon=True)
        self._thread.start()
        await ready
        return await self._submit(_backlog)

    async def close(self) -> None:
        """Finish the queued jobs, close the database and stop the thread."""
        if self._thread is None or self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    # ---- the event loop's side ------------------------------------------------------

    async def append(self, run_id: str, rows: Sequence[tuple[int, bytes]]) -> tuple[int, int]:
        """Make one request's rows durable.

        Args:
            run_id: the run they belong to.
            rows: (kind, encoded item) in the request's order.

        Returns:
            The first and last sequence numbers given to the rows (consecutive).

        Raises:
            SpoolClosed, sqlite3.Error: the rows were not stored.
        """
        now = time.time()

        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            first = self._next_seq
            conn.executemany(
                "INSERT INTO entries (seq, run_id, kind, payload, size, spooled_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(first + i, run_id, kind, payload, len(payload), now) for i, (kind, payload) in enumerate(rows)],
            )
            self._next_seq = first + len(rows)
            return first, first + len(rows) - 1

        return await self._submit(job)

    async def head(self, run_id: str, limit: int) -> list[Entity]:
        """The run's oldest undelivered rows, at most ``limit``, in sequence order."""

        def job(conn: sqlite3.Connection) -> list[Entity]:
            cursor = conn.execute(
                "SELECT seq, kind, payload, size, spooled_at FROM entries WHERE run_id = ? ORDER BY seq LIMIT ?",
                (run_id, limit),
            )
            return [Entity(seq, kind, _decode_item(kind, payload), size, at) for seq, kind, payload, size, at in cursor]

        return await self._submit(job)

    async def params_of_run(self, run_id: str) -> list[KeyValue]:
        """The run's undelivered params, oldest first."""

        def job(conn: sqlite3.Connection) -> list[KeyValue]:
            cursor = conn.execute(
                "SELECT payload FROM entries WHERE run_id = ? AND kind = ? ORDER BY seq", (run_id, PARAM)
            )
            return [_decode_key_value(payload) for (payload,) in cursor]

        return await self._submit(job)

    async def settle(self, run_id: str, through_seq: int, dead: Sequence[DeadLetter] = ()) -> None:
        """Remove the run's rows up to ``through_seq`` (delivered), keeping ``dead`` as dead letters."""
        now = time.time()

        def job(conn: sqlite3.Connection) -> None:
            if dead:
                conn.executemany(
                    "INSERT INTO dead_letters (run_id, kind, entity, status, error_code, message, spooled_at, dead_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            run_id,
                            KIND_NAMES[d.entity.kind],
                            entity_json(d.entity),
                            d.status,
                            d.error_code,
                            d.message,
                            d.entity.spooled_at,
                            now,
                        )
                        for d in dead
                    ],
                )
            conn.execute("DELETE FROM entries WHERE run_id = ? AND seq <= ?", (run_id, through_seq))

        await self._submit(job)

    async def oldest_spooled_at(self) -> float | None:
        """When the oldest undelivered row was spooled (epoch seconds), or None when empty."""

        def job(conn: sqlite3.Connection) -> float | None:
            row = conn.execute("SELECT spooled_at FROM entries ORDER BY seq LIMIT 1").fetchone()
            return row[0] if row else None

        return await self._submit(job)

    async def _submit(self, job: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed:
            raise SpoolClosed("the spool is closed")
        future = self._loop.create_future()
        self._jobs.put((job, future))
        return await future

    # ---- the spool thread -------------------------------------------------------------

    def _run(self, ready: asyncio.Future) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, before any write is acknowledged.
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
            self._next_seq = (row[0] if row else 0) + 1
        except BaseException as exc:  # report any failure to open to the waiting caller
            self._loop.call_soon_threadsafe(_settle_one, ready, None, exc)
            return
        self._loop.call_soon_threadsafe(_settle_one, ready, None, None)
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            group = [first]
            while len(group) < _MAX_GROUP:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                group.append(job)
            outcomes: list[tuple[asyncio.Future, Any, BaseException | None]] = []
            next_seq = self._next_seq
            try:
                conn.execute("BEGIN IMMEDIATE")
                for job, future in group:
                    outcomes.append((future, job(conn), None))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                log.error("spool transaction failed (%s); %d request(s) refused", exc, len(group))
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._next_seq = next_seq
                outcomes = [(future, None, exc) for _, future in group]
            self._loop.call_soon_threadsafe(_settle_many, outcomes)
        # Anything queued after the stop marker is refused, never silently dropped.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._loop.call_soon_threadsafe(_settle_one, job[1], None, SpoolClosed("the spool is closed"))


def _settle_one(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_many(outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        _settle_one(future, result, error)


def _backlog(conn: sqlite3.Connection) -> list[RunBacklog]:
    cursor = conn.execute(
        "SELECT run_id, count(*), sum(size), min(seq), max(seq) FROM entries GROUP BY run_id ORDER BY min(seq)"
    )
    return [RunBacklog(*row) for row in cursor]


def entity_json(entity: Entity) -> str:
    """An entity as the JSON MLflow's log-batch carries it."""
    item = entity.item
    if entity.kind == METRIC:
        return _json.encode(metric_json(item)).decode()
    return _json.encode({"key": item.key, "value": item.value}).decode()


def metric_json(point: MetricPoint) -> dict[str, Any]:
    """A metric point as log-batch's JSON (NaN as protobuf's "NaN")."""
    body: dict[str, Any] = {
        "key": point.key,
        "value": "NaN" if point.value != point.value else point.value,
        "timestamp": point.timestamp,
        "step": point.step,
    }
    if point.model_id:
        body["model_id"] = point.model_id
    if point.dataset_name:
        body["dataset_name"] = point.dataset_name
    if point.dataset_digest:
        body["dataset_digest"] = point.dataset_digest
    return body
