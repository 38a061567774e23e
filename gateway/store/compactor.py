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
from collections import deque
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

import asyncpg

from gateway import telemetry
from gateway.store import pgcopy
from gateway.store import points as chunked
from gateway.store.errors import translate_transient

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every gateway process.
_COMPACTOR_LOCK_ID = 0x6D6C636F6D70  # "mlcomp"

# The (run, key)s with a series of at least $1 small chunks, none newer than chunk id $3
# (NULL: any), with how many points their small chunks hold.
_CANDIDATES = """
SELECT run_id, key, sum(points) AS points FROM (
    SELECT run_id, key, sum(point_count) AS points FROM metric_chunks WHERE NOT sealed
    GROUP BY run_id, key, model_id, dataset_name, dataset_digest
    HAVING count(*) >= $1 AND ($3::bigint IS NULL OR max(chunk_id) <= $3)
    LIMIT $2) AS series
GROUP BY run_id, key
"""

# The last chunk id handed out (written or not): a mark of "now" in chunk ids.
_LAST_CHUNK_ID = "SELECT last_value FROM metric_chunk_id_seq"

# A series that took no new chunk for this long has its small chunks merged however few.
QUIET_SECONDS = 10.0

_LOCK_KEYS = """
SELECT s.run_id, s.key FROM metric_summaries s
JOIN unnest($1::uuid[], $2::text[]) AS w(run_id, key) ON s.run_id = w.run_id AND s.key = w.key
ORDER BY s.run_id, s.key FOR UPDATE OF s SKIP LOCKED
"""

# Every chunk of the locked keys, each series in step order.
_SERIES_CHUNKS = """
SELECT c.run_id, c.key, c.model_id, c.dataset_name, c.dataset_digest, c.chunk_id, c.first_step, c.last_step,
       c.point_count, c.sealed
FROM metric_chunks c JOIN unnest($1::uuid[], $2::text[]) AS w(run_id, key) ON c.run_id = w.run_id AND c.key = w.key
ORDER BY c.run_id, c.key, c.model_id, c.dataset_name, c.dataset_digest, c.first_step, c.chunk_id
"""

_SEAL = """
UPDATE metric_chunks c SET sealed = true FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
WHERE c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
"""

_TAKE_CHUNKS = """
DELETE FROM metric_chunks c USING unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
WHERE c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
RETURNING c.run_id, c.key, c.chunk_id, c.model_id, c.dataset_name, c.dataset_digest, c.first_step, c.last_step,
          c.first_timestamp, c.step_offsets, c.timestamp_offsets, c.metric_values
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
        batch_points: points per transaction, about.
        chunk_points: points in a sealed chunk.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        min_chunks: int = 8,
        batch_keys: int = 64,
        batch_points: int = 20_000,
        chunk_points: int = chunked.CHUNK_POINTS,
    ):
        self._pool = pool
        self._min_chunks = min_chunks
        self._batch_keys = batch_keys
        self._batch_points = batch_points
        self._chunk_points = chunk_points

    async def merge_round(self, *, min_chunks: int | None = None, quiet_since: int | None = None) -> Progress:
        """Merge the small chunks of one batch of (run, key)s having at least ``min_chunks``
        (and, with ``quiet_since``, no chunk written after that chunk id)."""
        needed = self._min_chunks if min_chunks is None else max(2, min_chunks)
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACTOR_LOCK_ID):
                    return Progress()
                found = await conn.fetch(_CANDIDATES, needed, self._batch_keys * 4, quiet_since)
                chosen, total = [], 0
                for row in found:
                    if chosen and (len(chosen) >= self._batch_keys or total + row["points"] > self._batch_points):
                        break
                    chosen.append((row["run_id"], row["key"]))
                    total += row["points"]
                keys = await self._lock(conn, chosen)
                if not keys:
                    return Progress()
                chunks = await conn.fetch(_SERIES_CHUNKS, [k[0] for k in keys], [k[1] for k in keys])
                groups, settled = self._plan(chunks)
                if settled:
                    await conn.execute(_SEAL, *map(list, zip(*((c["run_id"], c["key"], c["chunk_id"]) for c in settled))))
                picked = [chunk for group, _ in groups for chunk in group]
                taken = await conn.fetch(
                    _TAKE_CHUNKS, [c["run_id"] for c in picked], [c["key"] for c in picked],
                    [c["chunk_id"] for c in picked],
                )
                arrays = {row["chunk_id"]: row for row in taken}
                rows: list[tuple] = []
                for group, seal_last in groups:
                    self._merge(rows, [arrays[chunk["chunk_id"]] for chunk in group], seal_last)
                if rows:
                    await pgcopy.copy_chunks(conn, rows, chunked.CHUNK_COLUMNS)
                points = sum(chunk["point_count"] for chunk in picked)
                progress = Progress(
                    keys=len({(c["run_id"], c["key"]) for c in picked}) or len(settled), chunks_merged=len(taken),
                    chunks_written=len(rows), points=points,
                )
        telemetry.COMPACTED_POINTS.inc(progress.points)
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
                    by_key.setdefault((row["run_id"].hex, row["key"]), []).append(tuple(row[2:8]))
                progress = await self._write(conn, by_key)
                progress.rows_converted = len(taken)
        telemetry.CONVERTED_ROWS.inc(progress.rows_converted)
        return progress

    def _plan(self, chunks: list) -> tuple[list[tuple[list, bool]], list]:
        """What one batch merges: groups of chunks, each with whether its last chunk is sealed;
        and the chunks to seal as they are.

        A series' chunks are taken in step order. Chunks whose step ranges overlap
        (points written out of order) are merged together, sealed or not; runs of
        small chunks between sealed ones are merged into one stretch. So merged
        chunks never overlap, and a reader can place a point by counts alone. A run
        followed by a sealed chunk ends sealed; a small chunk alone between sealed
        ones is sealed as it is; the last run of a series stays open for the writes
        to come. About ``batch_points`` points are taken in all.
        """
        groups: list[tuple[list, bool]] = []
        settled: list = []
        room = self._batch_points
        for _, series in groupby(chunks, key=itemgetter(0, 1, 2, 3, 4)):
            run: list = []
            for cluster in chunked.clusters(list(series), itemgetter("first_step"), itemgetter("last_step")):
                if len(cluster) == 1 and cluster[0]["sealed"]:
                    if len(run) == 1 and not run[0]["sealed"]:
                        settled.append(run[0])
                    elif len(run) > 1:
                        groups.append((run, True))
                        room -= sum(chunk["point_count"] for chunk in run)
                    run = []
                    if room <= 0:
                        break
                else:
                    run.extend(cluster)
                    if len(run) > 1 and sum(chunk["point_count"] for chunk in run) >= room:
                        break  # the rest of this run waits for the next batch
            if len(run) > 1 and room > 0:
                groups.append((run, False))
                room -= sum(chunk["point_count"] for chunk in run)
            if room <= 0:
                break
        return groups, settled

    def _merge(self, rows: list, taken: list, seal_last: bool) -> None:
        """COPY rows of taken chunks of one series merged: laid end to end in step order,
        and sorted where their step ranges overlap."""
        first = taken[0]
        steps: list = []
        timestamps: list = []
        values: list = []
        for cluster in chunked.clusters(taken, itemgetter("first_step"), itemgetter("last_step")):
            if len(cluster) == 1:
                chunk = cluster[0]
                base_step, base_time = chunk["first_step"], chunk["first_timestamp"]
                steps += [base_step + offset for offset in chunk["step_offsets"]]
                timestamps += [base_time + offset for offset in chunk["timestamp_offsets"]]
                values += chunk["metric_values"]
                continue
            points = sorted(
                (
                    (chunk["first_step"] + s, chunk["first_timestamp"] + t, v)
                    for chunk in cluster
                    for s, t, v in zip(chunk["step_offsets"], chunk["timestamp_offsets"], chunk["metric_values"])
                ),
                key=lambda p: chunked.identity(*p),
            )
            steps += [p[0] for p in points]
            timestamps += [p[1] for p in points]
            values += [p[2] for p in points]
        kind = (first["model_id"], first["dataset_name"], first["dataset_digest"])
        chunked.add_chunks(rows, first["run_id"].hex, first["key"], kind, steps, timestamps, values, 0, len(steps),
                           size=self._chunk_points, seal_last=seal_last)

    async def _lock(self, conn: asyncpg.Connection, keys: list[tuple]) -> list[tuple]:
        if not keys:
            return []
        rows = await conn.fetch(_LOCK_KEYS, [k[0] for k in keys], [k[1] for k in keys])
        return [(row["run_id"], row["key"]) for row in rows]

    async def _write(self, conn: asyncpg.Connection, by_key: dict[tuple, list]) -> Progress:
        rows: list[tuple] = []
        moved = 0
        for (run_id, key), found in by_key.items():
            for kind, points in groupby(sorted(found, key=_series_order), key=itemgetter(3, 4, 5)):
                points = list(points)
                steps, timestamps, values = [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
                chunked.add_chunks(rows, run_id, key, kind, steps, timestamps, values, 0, len(points),
                                   size=self._chunk_points)
                moved += len(points)
        if rows:
            await pgcopy.copy_chunks(conn, rows, chunked.CHUNK_COLUMNS)
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

    async def run(self, interval: float, stopping: asyncio.Event, *, quiet: float = QUIET_SECONDS) -> None:
        """Compact in the background until ``stopping`` is set.

        Each tick works while it finds work, up to about ``interval`` seconds, then
        rests ``interval``: series with ``min_chunks`` small chunks first, rows of
        metric_rows next, and when neither is left, series with two small chunks or
        more that took no new chunk for ``quiet`` seconds.
        """
        marks: deque[tuple[float, int]] = deque()  # (when, the chunk id sequence then)
        while not stopping.is_set():
            started = time.monotonic()
            try:
                marks.append((started, await self._pool.fetchval(_LAST_CHUNK_ID)))
                while len(marks) > 1 and marks[1][0] <= started - quiet:
                    marks.popleft()
                quiet_since = marks[0][1] if marks[0][0] <= started - quiet else None
                while time.monotonic() - started < interval and not stopping.is_set():
                    with telemetry.COMPACTION_SECONDS.time():
                        step = await self.merge_round()
                        if not step.did_work:
                            step = await self.convert_round()
                        if not step.did_work and quiet_since is not None:
                            step = await self.merge_round(min_chunks=2, quiet_since=quiet_since)
                    if not step.did_work:
                        break
            except Exception:  # a failed round is retried next tick; ingestion goes on
                log.exception("compaction round failed")
            try:
                await asyncio.wait_for(stopping.wait(), timeout=interval)
            except TimeoutError:
                pass


def _series_order(row: tuple) -> tuple:
    """Rows (step, timestamp, value, model_id, dataset_name, dataset_digest) by series, then point order."""
    return (tuple("" if v is None else "\x00" + v for v in row[3:6]), chunked.identity(*row[:3]))
