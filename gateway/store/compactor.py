"""The compactor: merges each series' small chunks into sealed ones, and moves the rows of
earlier releases' row-per-point table (metric_rows) into chunks.

Work goes a batch of (run, key)s at a time, each batch one short transaction. It
first takes the batch's metric_summaries rows FOR UPDATE SKIP LOCKED: the rows every
flush locks before it decides which of its points are stored already, so a flush
never sees a series half merged, and a key a flush holds is left for a later round
rather than waited for. A batch rolls back whole if it is interrupted (even by
SIGKILL), so nothing is lost or stored twice, and the next round takes it again.
One compactor works on a database at a time (a transaction-level advisory lock);
the others skip their round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg

from gateway import telemetry
from gateway.store import points as chunked
from gateway.store.errors import translate_transient

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every gateway process.
_COMPACTOR_LOCK_ID = 0x6D6C636F6D70  # "mlcomp"

# The (run, key)s with a series of at least $1 small chunks, with how many points their
# small chunks hold.
_CANDIDATES = """
SELECT run_id, key, sum(points) AS points FROM (
    SELECT run_id, key, sum(point_count) AS points FROM metric_chunks WHERE NOT sealed
    GROUP BY run_id, key, model_id, dataset_name, dataset_digest HAVING count(*) >= $1
    LIMIT $2) AS series
GROUP BY run_id, key
"""

_LOCK_KEYS = """
SELECT s.run_id, s.key FROM metric_summaries s
JOIN unnest($1::uuid[], $2::text[]) AS w(run_id, key) ON s.run_id = w.run_id AND s.key = w.key
ORDER BY s.run_id, s.key FOR UPDATE OF s SKIP LOCKED
"""

_TAKE_SMALL_CHUNKS = """
DELETE FROM metric_chunks c USING unnest($1::uuid[], $2::text[]) AS w(run_id, key)
WHERE c.run_id = w.run_id AND c.key = w.key AND NOT c.sealed
RETURNING c.run_id, c.key, c.model_id, c.dataset_name, c.dataset_digest, c.steps, c.timestamps, c.metric_values
"""

_UNCONVERTED_KEYS = "SELECT DISTINCT run_id, key FROM (SELECT run_id, key FROM metric_rows LIMIT $1) AS unconverted"

_TAKE_ROWS = """
DELETE FROM metric_rows m USING unnest($1::uuid[], $2::text[]) AS w(run_id, key)
WHERE m.run_id = w.run_id AND m.key = w.key
RETURNING m.run_id, m.key, m.step, m.timestamp, m.value, m.model_id, m.dataset_name, m.dataset_digest
"""


@dataclass
class Progress:
    """What compaction has done: (run, key)s rewritten, small chunks merged, chunks written,
    points moved, and of those, rows of metric_rows converted."""

    keys: int = 0
    chunks_merged: int = 0
    chunks_written: int = 0
    points: int = 0
    rows_converted: int = 0

    def add(self, other: Progress) -> None:
        self.keys += other.keys
        self.chunks_merged += other.chunks_merged
        self.chunks_written += other.chunks_written
        self.points += other.points
        self.rows_converted += other.rows_converted

    @property
    def did_work(self) -> bool:
        return self.keys > 0


class Compactor:
    """Compacts the metric chunks of one database.

    Args:
        pool: the asyncpg pool.
        min_chunks: a (run, key) is compacted once it has this many small chunks.
        batch_keys: (run, key)s per transaction, at most.
        batch_points: points per transaction, about (a key is never split).
        chunk_points: points in a sealed chunk.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        min_chunks: int = 8,
        batch_keys: int = 64,
        batch_points: int = 100_000,
        chunk_points: int = chunked.CHUNK_POINTS,
    ):
        self._pool = pool
        self._min_chunks = min_chunks
        self._batch_keys = batch_keys
        self._batch_points = batch_points
        self._chunk_points = chunk_points

    async def merge_round(self, *, min_chunks: int | None = None) -> Progress:
        """Merge the small chunks of one batch of (run, key)s having at least ``min_chunks``."""
        needed = self._min_chunks if min_chunks is None else max(2, min_chunks)
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACTOR_LOCK_ID):
                    return Progress()
                found = await conn.fetch(_CANDIDATES, needed, self._batch_keys * 4)
                chosen, total = [], 0
                for row in found:
                    if chosen and (len(chosen) >= self._batch_keys or total + row["points"] > self._batch_points):
                        break
                    chosen.append((row["run_id"], row["key"]))
                    total += row["points"]
                keys = await self._lock(conn, chosen)
                if not keys:
                    return Progress()
                taken = await conn.fetch(_TAKE_SMALL_CHUNKS, [k[0] for k in keys], [k[1] for k in keys])
                by_key: dict[tuple, list] = {}
                for row in taken:
                    group = by_key.setdefault((row[0].hex, row[1]), [])
                    series = (row[2], row[3], row[4])
                    group.extend((s, t, v, *series) for s, t, v in zip(row[5], row[6], row[7]))
                progress = await self._write(conn, by_key)
                progress.chunks_merged = len(taken)
        telemetry.COMPACTED_CHUNKS.inc(progress.chunks_merged)
        return progress

    async def convert_round(self) -> Progress:
        """Move one batch of (run, key)s from metric_rows into chunks."""
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACTOR_LOCK_ID):
                    return Progress()
                found = await conn.fetch(_UNCONVERTED_KEYS, self._batch_points)
                keys = await self._lock(conn, [(row["run_id"], row["key"]) for row in found][: self._batch_keys])
                if not keys:
                    return Progress()
                taken = await conn.fetch(_TAKE_ROWS, [k[0] for k in keys], [k[1] for k in keys])
                by_key: dict[tuple, list] = {}
                for row in taken:
                    by_key.setdefault((row[0].hex, row[1]), []).append(tuple(row[2:8]))
                progress = await self._write(conn, by_key)
                progress.rows_converted = len(taken)
        telemetry.CONVERTED_ROWS.inc(progress.rows_converted)
        return progress

    async def _lock(self, conn: asyncpg.Connection, keys: list[tuple]) -> list[tuple]:
        if not keys:
            return []
        rows = await conn.fetch(_LOCK_KEYS, [k[0] for k in keys], [k[1] for k in keys])
        return [(row["run_id"], row["key"]) for row in rows]

    async def _write(self, conn: asyncpg.Connection, by_key: dict[tuple, list]) -> Progress:
        rows = []
        moved = 0
        for (run_id, key), found in by_key.items():
            chunked.sort_points(found, has_nan=any(p[2] != p[2] for p in found))
            rows.extend(chunked.chunk_rows(run_id, key, found, size=self._chunk_points))
            moved += len(found)
        if rows:
            await conn.copy_records_to_table("metric_chunks", records=rows, columns=chunked.CHUNK_COLUMNS)
        telemetry.COMPACTED_POINTS.inc(moved)
        return Progress(keys=len(by_key), chunks_written=len(rows), points=moved)

    async def until_done(self) -> Progress:
        """Convert every row of metric_rows and merge every series with two small chunks or more."""
        done = Progress()
        while True:
            step = await self.convert_round()
            if not step.did_work:
                step = await self.merge_round(min_chunks=2)
            if not step.did_work:
                return done
            done.add(step)

    async def run(self, interval: float, stopping: asyncio.Event) -> None:
        """Compact in the background until ``stopping`` is set.

        Each tick works while it finds work, up to about ``interval`` seconds, then
        rests ``interval``: series with ``min_chunks`` small chunks first, rows of
        metric_rows next, and when neither is left, every series with two or more
        small chunks (a quiet series).
        """
        while not stopping.is_set():
            started = time.monotonic()
            try:
                while time.monotonic() - started < interval and not stopping.is_set():
                    with telemetry.COMPACTION_SECONDS.time():
                        step = await self.merge_round()
                        if not step.did_work:
                            step = await self.convert_round()
                        if not step.did_work:
                            step = await self.merge_round(min_chunks=2)
                    if not step.did_work:
                        break
            except Exception:  # a failed round is retried next tick; ingestion goes on
                log.exception("compaction round failed")
            try:
                await asyncio.wait_for(stopping.wait(), timeout=interval)
            except TimeoutError:
                pass
