"""The compactor: merges each series' small chunks into sealed ones, and moves the rows of
earlier releases' row-per-point table (metric_rows) into chunks.

A batch is planned from the chunks' ranges and counts, its chunks read and
merged, all in a read-only transaction that locks nothing. The merged chunks
then replace the old ones in a short transaction that first takes the batch's
metric_summaries rows FOR UPDATE (the rows every flush locks before it decides
which of its points are stored already, so a flush never sees a series half
merged) and deletes exactly the chunks read, or gives up if one of them changed.
A batch rolls back whole if it is interrupted (even by SIGKILL), so nothing is
lost or stored twice, and the next round plans it again. One compactor swaps
chunks in a database at a time (a transaction-level advisory lock); the others
skip their round.
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
from gateway.store.connections import connection
from gateway.store.distribution import RunShards

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every gateway process.
_COMPACTOR_LOCK_ID = 0x6D6C636F6D70  # "mlcomp"

# While writes go on, chunks of at least this many points are left as they are: a point
# of theirs takes at most about 23 bytes (16 in the arrays, the row's share of the rest),
# so merging them would cost a rewrite for little. A quiet series is merged whole.
# metric_chunks_small (sql/012) indexes the chunks below it: the two must agree.
WORTH_MERGING_BELOW = 100

# While writes go on: the (run, key)s with a series whose unsealed chunks of fewer than
# WORTH_MERGING_BELOW points hold at least $1 points or number at least $2, with how
# many points those hold. Only such chunks are read, from their own index: a flood of
# log-batch calls makes none, and had every round read all of its unsealed chunks.
_CANDIDATES_WHILE_WRITING = f"""
SELECT run_id, key, sum(points) AS points FROM (
    SELECT run_id, key, sum(point_count) AS points FROM metric_chunks
    WHERE NOT sealed AND point_count < {WORTH_MERGING_BELOW}
    GROUP BY run_id, key, model_id, dataset_name, dataset_digest
    HAVING count(*) >= 2 AND (sum(point_count) >= $1 OR count(*) >= $2)
    LIMIT $3) AS series
GROUP BY run_id, key
"""

# Every series with two unsealed chunks or more of fewer than $3 points (and none of whose
# chunks is newer than chunk id $2, unless NULL), by (run, key), with how many points
# their unsealed chunks hold.
_CANDIDATES_COMPLETE = """
SELECT run_id, key, sum(points) AS points FROM (
    SELECT run_id, key, sum(point_count) AS points FROM metric_chunks WHERE NOT sealed
    GROUP BY run_id, key, model_id, dataset_name, dataset_digest
    HAVING count(*) FILTER (WHERE point_count < $3) >= 2 AND ($2::bigint IS NULL OR max(chunk_id) <= $2)
    LIMIT $1) AS series
GROUP BY run_id, key
"""

# The last chunk id handed out (written or not): a mark of "now" in chunk ids.
_LAST_CHUNK_ID = "SELECT last_value FROM metric_chunk_id_seq"

# A series that took no new chunk for this long has its small chunks merged however few.
QUIET_SECONDS = 10.0

_LOCK_KEYS = """
SELECT s.run_id, s.key FROM metric_summaries s
JOIN unnest($1::uuid[], $2::text[]) AS w(run_id, key) ON s.run_id = w.run_id AND s.key = w.key
WHERE s.run_id = ANY($1::uuid[])
ORDER BY s.run_id, s.key FOR UPDATE OF s
"""

# Every chunk of the keys, each series in step order.
_SERIES_CHUNKS = """
SELECT c.run_id, c.key, c.model_id, c.dataset_name, c.dataset_digest, c.chunk_id, c.first_step, c.last_step,
       c.first_timestamp, c.last_timestamp, c.point_count, c.sealed
FROM metric_chunks c JOIN unnest($1::uuid[], $2::text[]) AS w(run_id, key) ON c.run_id = w.run_id AND c.key = w.key
ORDER BY c.run_id, c.key, c.model_id, c.dataset_name, c.dataset_digest, c.first_step, c.chunk_id
"""

_SEAL = """
UPDATE metric_chunks c SET sealed = true FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
WHERE c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
"""

_READ_CHUNKS = """
SELECT c.chunk_id, c.first_step, c.first_timestamp, c.step_offsets, c.timestamp_offsets, c.metric_values
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
JOIN metric_chunks c ON c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
"""

# How many of the chunks are deleted (all of them, unless one changed since it was read).
_TAKE_CHUNKS = """
WITH taken AS (
    DELETE FROM metric_chunks c USING unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
    WHERE c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
    RETURNING 1)
SELECT count(*) FROM taken
"""

# A flush holds a key's lock for a few statements; a compaction waits that long at most.
_LOCK_WAIT = "SET LOCAL lock_timeout = '250ms'"

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
        min_chunks: while writes go on, a series' run of small chunks is merged once
            it holds a sealed chunk's worth of points, or numbers this many chunks.
        batch_keys: (run, key)s per transaction, at most.
        batch_points: points per transaction, about.
        chunk_points: points in a sealed chunk.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        min_chunks: int = 64,
        batch_keys: int = 64,
        batch_points: int = 50_000,
        chunk_points: int = chunked.CHUNK_POINTS,
    ):
        self._pool = pool
        self._shards = RunShards()
        self._min_chunks = min_chunks
        self._batch_keys = batch_keys
        self._batch_points = batch_points
        self._chunk_points = chunk_points

    async def merge_round(self, *, complete: bool = False, quiet_since: int | None = None) -> Progress:
        """Merge the small chunks of one batch of (run, key)s.

        Without ``complete`` (while writes go on), only runs of chunks smaller than
        WORTH_MERGING_BELOW that fill a sealed chunk or reach ``min_chunks`` are
        merged, so a point is rewritten about once; with it, every run of two chunks or
        more, of the series that took no chunk newer than ``quiet_since`` if given.
        """
        async with connection(self._pool) as conn:
            # Planned from ranges and counts, without a lock: no flush waits for this part.
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                if complete:
                    found = await conn.fetch(
                        _CANDIDATES_COMPLETE, self._batch_keys * 4, quiet_since, self._chunk_points)
                else:
                    found = await conn.fetch(
                        _CANDIDATES_WHILE_WRITING, self._chunk_points, self._min_chunks, self._batch_keys * 4)
                chosen, total = [], 0
                for row in found:
                    if chosen and (len(chosen) >= self._batch_keys or total + row["points"] > self._batch_points):
                        break
                    chosen.append((row["run_id"], row["key"]))
                    total += row["points"]
                if not chosen:
                    return Progress()
                chunks = await conn.fetch(_SERIES_CHUNKS, [k[0] for k in chosen], [k[1] for k in chosen])
                groups, settled = self._plan(chunks, complete)
                if not groups and not settled:
                    return Progress()
                picked = [chunk for group, _ in groups for chunk in group]
                arrays = {row["chunk_id"]: row for row in await conn.fetch(_READ_CHUNKS, *_ids(picked))}
            rows: list[tuple] = []
            for group, seal_last in groups:
                self._merge(rows, group, arrays, seal_last)
            touched = sorted({(c["run_id"], c["key"]) for c in picked + settled})
            try:
                async with conn.transaction():
                    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACTOR_LOCK_ID):
                        return Progress()
                    await conn.execute(_LOCK_WAIT)
                    await self._lock(conn, touched)
                    if picked and await conn.fetchval(_TAKE_CHUNKS, *_ids(picked)) != len(picked):
                        raise _Changed
                    if settled:
                        await conn.execute(_SEAL, *_ids(settled))
                    if rows:
                        await pgcopy.copy_chunks(conn, rows, chunked.CHUNK_COLUMNS)
            except (_Changed, asyncpg.LockNotAvailableError):
                return Progress()  # rolled back (a chunk changed, or a flush held a key): planned again later
        progress = Progress(
            keys=len(touched), chunks_merged=len(picked), chunks_written=len(rows),
            points=sum(chunk["point_count"] for chunk in picked),
        )
        telemetry.COMPACTED_POINTS.inc(progress.points)
        telemetry.COMPACTED_CHUNKS.inc(progress.chunks_merged)
        return progress

    async def convert_round(self) -> Progress:
        """Move one batch of (run, key)s from metric_rows into chunks."""
        async with connection(self._pool) as conn:
            try:
                async with conn.transaction():
                    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACTOR_LOCK_ID):
                        return Progress()
                    found = await conn.fetch(_UNCONVERTED_KEYS, self._batch_points)
                    await conn.execute(_LOCK_WAIT)
                    keys = await self._lock(
                        conn, [(row["run_id"], row["key"]) for row in found][: self._batch_keys])
                    if not keys:
                        return Progress()
                    taken = await conn.fetch(_TAKE_ROWS, [k[0] for k in keys], [k[1] for k in keys])
                    by_key: dict[tuple, list] = {}
                    for row in taken:
                        by_key.setdefault((row["run_id"].hex, row["key"]), []).append(tuple(row[2:8]))
                    progress = await self._write(conn, by_key)
                    progress.rows_converted = len(taken)
            except asyncpg.LockNotAvailableError:
                return Progress()  # a flush held a key too long: the next round tries again
        telemetry.CONVERTED_ROWS.inc(progress.rows_converted)
        return progress

    def _plan(self, chunks: list, complete: bool) -> tuple[list[tuple[list, bool]], list]:
        """What one batch merges: groups of chunks, each with whether its last chunk is sealed;
        and the chunks to seal as they are.

        A series' chunks are taken in step order. Chunks whose step ranges overlap
        (points written out of order) are merged together, sealed or not; runs of
        small chunks between sealed ones are merged into one stretch. So merged
        chunks never overlap, and a reader can place a point by counts alone. A run
        followed by a sealed chunk ends sealed; a small chunk alone between sealed
        ones is sealed as it is; the last run of a series stays open for the writes
        to come. Without ``complete``, a chunk of WORTH_MERGING_BELOW points or more
        bounds a run as a sealed one does, and a run that neither overlaps nor fills a
        sealed chunk nor numbers ``min_chunks`` waits. A run whose steps or times span more
        than 32-bit offsets hold is sealed chunk by chunk instead. About
        ``batch_points`` points are taken in all.
        """
        groups: list[tuple[list, bool]] = []
        settled: list = []
        room = self._batch_points

        def close(run: list, overlapping: bool, seal_last: bool) -> None:
            nonlocal room
            points = sum(chunk["point_count"] for chunk in run)
            if len(run) == 1:
                if seal_last and not run[0]["sealed"]:
                    settled.append(run[0])
            elif _too_wide(run):
                settled.extend(chunk for chunk in run if not chunk["sealed"])
            elif complete or overlapping or points >= self._chunk_points or len(run) >= self._min_chunks:
                groups.append((run, seal_last))
                room -= points

        for _, series in groupby(chunks, key=itemgetter(0, 1, 2, 3, 4)):
            run: list = []
            overlapping = False
            for cluster in chunked.clusters(list(series), itemgetter("first_step"), itemgetter("last_step")):
                sealed = len(cluster) == 1 and cluster[0]["sealed"]
                if sealed or (not complete and len(cluster) == 1 and cluster[0]["point_count"] >= WORTH_MERGING_BELOW):
                    if run:  # a run before a sealed chunk ends sealed; one before a big open chunk, open
                        close(run, overlapping, sealed)
                    run, overlapping = [], False
                    if room <= 0:
                        break
                    continue
                run.extend(cluster)
                overlapping = overlapping or len(cluster) > 1
                if len(run) > 1 and sum(chunk["point_count"] for chunk in run) >= room:
                    close(run, overlapping, False)  # the rest of this run waits for the next batch
                    run = []
                    break
            if run and room > 0:
                close(run, overlapping, False)
            if room <= 0:
                break
        return groups, settled

    def _merge(self, rows: list, group: list, arrays: dict, seal_last: bool) -> None:
        """COPY rows of a group of one series' chunks merged: laid end to end in step order,
        and sorted where their step ranges overlap."""
        steps: list = []
        timestamps: list = []
        values: list = []
        for cluster in chunked.clusters(group, itemgetter("first_step"), itemgetter("last_step")):
            read = [arrays[chunk["chunk_id"]] for chunk in cluster]
            if len(read) == 1:
                chunk = read[0]
                base_step, base_time = chunk["first_step"], chunk["first_timestamp"]
                steps += [base_step + offset for offset in chunk["step_offsets"]]
                timestamps += [base_time + offset for offset in chunk["timestamp_offsets"]]
                values += chunk["metric_values"]
                continue
            points = sorted(
                (
                    (chunk["first_step"] + s, chunk["first_timestamp"] + t, v)
                    for chunk in read
                    for s, t, v in zip(chunk["step_offsets"], chunk["timestamp_offsets"], chunk["metric_values"])
                ),
                key=lambda p: chunked.identity(*p),
            )
            steps += [p[0] for p in points]
            timestamps += [p[1] for p in points]
            values += [p[2] for p in points]
        first = group[0]
        kind = (first["model_id"], first["dataset_name"], first["dataset_digest"])
        chunked.add_chunks(rows, first["run_id"].hex, first["key"], kind, steps, timestamps, values, 0, len(steps),
                           size=self._chunk_points, seal_last=seal_last)

    async def _lock(self, conn: asyncpg.Connection, keys: list[tuple]) -> list[tuple]:
        if not keys:
            return []
        # A shard at a time on Citus, in the order flushes lock them (store/distribution.py).
        rows = []
        for group in await self._shards.groups(conn, {k[0] for k in keys}):
            members = set(group)
            chosen = sorted(k for k in keys if _hex(k[0]) in members)
            rows += await conn.fetch(_LOCK_KEYS, [k[0] for k in chosen], [k[1] for k in chosen])
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
                step = await self.merge_round(complete=True)
            if not step.did_work:
                return done
            done.add(step)

    async def run(self, interval: float, stopping: asyncio.Event, *, quiet: float = QUIET_SECONDS) -> None:
        """Compact in the background until ``stopping`` is set.

        Each tick works while it finds work, up to about ``interval`` seconds, then
        rests ``interval``: runs of small chunks that fill a sealed chunk (or number
        ``min_chunks``) first, rows of metric_rows next, and when neither is left,
        the small chunks of series that took no new chunk for ``quiet`` seconds. Those
        are looked for again ``quiet / 2`` seconds after a search that found none: the
        search reads every unsealed chunk.
        """
        marks: deque[tuple[float, int]] = deque()  # (when, the chunk id sequence then)
        quiet_due = 0.0  # when quiet series are next looked for
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
                        if not step.did_work and quiet_since is not None and time.monotonic() >= quiet_due:
                            step = await self.merge_round(complete=True, quiet_since=quiet_since)
                            if not step.did_work:
                                quiet_due = time.monotonic() + quiet / 2
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


def _hex(run_id) -> str:
    return run_id if isinstance(run_id, str) else run_id.hex


class _Changed(Exception):
    """A chunk read for a merge changed before the swap; the batch is rolled back."""


def _ids(chunks: list) -> tuple[list, list, list]:
    """The (run ids, keys, chunk ids) of chunk rows, as the statements take them."""
    return [c["run_id"] for c in chunks], [c["key"] for c in chunks], [c["chunk_id"] for c in chunks]


def _too_wide(run: list) -> bool:
    """Whether merged chunks of the run might need offsets past 32 bits (steps or milliseconds)."""
    return (
        max(c["last_step"] for c in run) - min(c["first_step"] for c in run) >= 2**31
        or max(c["last_timestamp"] for c in run) - min(c["first_timestamp"] for c in run) >= 2**31
    )
