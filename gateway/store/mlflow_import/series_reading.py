"""A batch of runs' metric series read from a store and made into chunk COPY data and summaries.

The series of a batch are listed with their point counts, then read whole in
the store's index order (run, key, step): from PostgreSQL as arrays the store
makes, from SQLite and MySQL as rows cut into series by those counts. Each is
made into sealed chunks (series.py) as it arrives.

Turning SQLite's or MySQL's rows into Python values costs about a microsecond
a point, more than everything else of an import, so from those stores batches
are read by worker processes, one per core (:class:`Workers`). A worker keeps
its own connection and read snapshot; it lists the batch's series again there
and answers only if it finds the same series with the same point counts as the
import's snapshot. MLflow only ever adds points to a series (a run's points go
only with the run), so equal counts are equal points. Otherwise the import
reads the batch itself.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import gc
import itertools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from gateway.store import pgcopy
from gateway.store.mlflow_import.series import KeySummary, SeriesBuilder, split_by_model
from gateway.store.mlflow_import.source import Source, open_source

# MLflow's key column, quoted: the word is reserved in MySQL.
_KEY = '"key"'
_NAN = float("nan")
# Chunk rows packed into COPY data at a time.
_CHUNKS_PER_PIECE = 256


@dataclass(frozen=True)
class Batch:
    """The series of a batch of runs, as the import's snapshot lists them.

    ``series`` holds (run_id, key, points) in the order ``order`` reads points;
    ``index_from`` is the FROM clause reading metrics through MLflow's (run_uuid,
    key, step) index, or None where the store has no such index.
    """

    low: str
    high: str
    series: list[tuple]
    order: str
    index_from: str | None


async def list_series(source: Source, low: str, high: str, index_from: str | None) -> Batch:
    """The metric series of the runs from ``low`` to ``high``, and the ORDER BY that reads them in that order.

    Grouped and ordered as the store compares keys, which its index follows; where its
    collation takes two keys of a run for one (MySQL's folds case), they are grouped again
    byte by byte, and the points read in that order (a sort the index does not spare).
    """
    order = f"run_uuid, {_KEY}"
    rows = await source.fetch(
        f"SELECT run_uuid, {_KEY}, count(*), {source.differ_exactly(_KEY)} FROM metrics "
        f"WHERE run_uuid BETWEEN $1 AND $2 GROUP BY {order} ORDER BY {order}", low, high)
    if any(row[3] for row in rows):
        order = f"run_uuid, {_KEY}, {source.exactly(_KEY)}"
        rows = await source.fetch(
            f"SELECT run_uuid, {_KEY}, count(*) FROM metrics WHERE run_uuid BETWEEN $1 AND $2 "
            f"GROUP BY {order} ORDER BY {order}", low, high)
    return Batch(low, high, [tuple(row[:3]) for row in rows], order, index_from)


async def chunk_pieces(source: Source, batch: Batch, model_points: dict, summaries: list) -> AsyncIterator[bytes]:
    """COPY rows (no header or trailer) of the batch's chunks, a few series at a time; appends each
    (run, key)'s summary row to ``summaries``.

    ``model_points`` maps (run, key) to that key's logged-model points (see
    :func:`series.split_by_model`); keys with such points and no metric rows are added last.
    """
    rows: list[tuple] = []
    async for number, steps, timestamps, values in _series_points(source, batch):
        run_id, key, _ = batch.series[number]
        _take_series(rows, summaries, run_id, key, steps, timestamps, values, model_points)
        if len(rows) >= _CHUNKS_PER_PIECE:
            yield pgcopy.chunk_records(rows)
            rows.clear()
    for run_id, key in sorted(set(model_points) - {(run_id, key) for run_id, key, _ in batch.series}):
        _take_series(rows, summaries, run_id, key, [], [], [], model_points)
    if rows:
        yield pgcopy.chunk_records(rows)


def _take_series(rows: list, summaries: list, run_id: str, key: str, steps: list, timestamps: list,
                 values: list, model_points: dict) -> None:
    """Append a (run, key)'s chunk rows and summary; values hold NaN as NaN."""
    summary = KeySummary()
    points = model_points.get((run_id, key))
    if points is None:
        builder = SeriesBuilder(run_id, key)
        builder.add(steps, timestamps, values)
        builder.take(rows)
        summary.merge(builder)
    else:
        # Matched with logged-model points as MLflow stores a NaN: 0 with a flag.
        flags = [value != value for value in values]
        stored = [0.0 if flag else value for value, flag in zip(values, flags)]
        for builder in split_by_model(run_id, key, steps, timestamps, stored, flags, points):
            builder.take(rows)
            summary.merge(builder)
    summaries.append(summary.record(run_id, key))


def _series_points(source: Source, batch: Batch):
    """(number, steps, timestamps, values) of each series, in the order of ``batch.series``; values hold
    NaN as NaN."""
    if source.dialect == "postgresql":
        return _series_arrays(source, batch)
    return _series_rows(source, batch)


async def _series_arrays(source: Source, batch: Batch):
    """From PostgreSQL: each series as arrays, made by the store from its (run, key, step) index
    (a lookup of its run and key: a join would let the planner scan the whole table)."""
    reader = pgcopy.CopyReader()
    data = source.copy_out(
        "SELECT (s.series - 1)::integer, p.steps, p.timestamps, p.vals "
        "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(run_uuid, key, series) "
        "CROSS JOIN LATERAL (SELECT array_agg(step) AS steps, array_agg(timestamp) AS timestamps, "
        "                           array_agg(value) AS vals "
        "                    FROM (SELECT step::bigint, timestamp::bigint, "
        "                                 CASE WHEN is_nan THEN 'NaN'::float8 ELSE value::float8 END AS value "
        f"                          FROM {batch.index_from or 'metrics'} "
        "                          WHERE run_uuid = s.run_uuid AND key = s.key "
        "                          ORDER BY step) o) p",
        [run_id for run_id, _, _ in batch.series], [key for _, key, _ in batch.series])
    async with contextlib.aclosing(data):
        async for piece in data:
            for number, steps, timestamps, values in reader.feed(piece):
                yield (pgcopy.int4_of(number), pgcopy.int8_array_of(steps), pgcopy.int8_array_of(timestamps),
                       pgcopy.float8_array_of(values))


async def _series_rows(source: Source, batch: Batch):
    """From SQLite or MySQL: the points as rows, in index order, cut into series by their counts."""
    order, metrics = batch.order, "metrics"
    if batch.index_from is not None:
        order, metrics = order + ", step", batch.index_from
    ahead = iter([count for _, _, count in batch.series])
    number, left = -1, 0
    steps: list = []
    timestamps: list = []
    values: list = []
    points = source.stream(
        f"SELECT step, timestamp, value, is_nan FROM {metrics} WHERE run_uuid BETWEEN $1 AND $2 ORDER BY {order}",
        batch.low, batch.high, batch=65_536,
    )
    async with contextlib.aclosing(points):
        async for rows in points:
            row_steps, row_timestamps, row_values, nan_flags = zip(*rows)
            if any(nan_flags):
                row_values = [_NAN if flag else value for value, flag in zip(row_values, nan_flags)]
            size = len(rows)
            start = 0
            while start < size:
                if left == 0:
                    number, left = number + 1, next(ahead)
                taken = min(left, size - start)
                steps += row_steps[start:start + taken]
                timestamps += row_timestamps[start:start + taken]
                values += row_values[start:start + taken]
                left -= taken
                start += taken
                if left == 0:
                    yield number, steps, timestamps, values
                    steps, timestamps, values = [], [], []


# ---- worker processes -------------------------------------------------------------------


class Workers:
    """Worker processes that read batches from a SQLite or MySQL store and make their chunks.

    Args:
        uri: the store's URI, as the import opened it.
        count: how many processes.
    """

    def __init__(self, uri: str, count: int):
        self.count = count
        self._pool = ProcessPoolExecutor(
            max_workers=count, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(uri,),
        )

    async def chunk_pieces(self, source: Source, batch: Batch, model_points: dict,
                           summaries: list) -> AsyncIterator[bytes]:
        """:func:`chunk_pieces` of the batch, its parts made by the workers side by side.

        A part is whole runs of about :data:`POINTS_PER_PART` points (more for a single
        bigger run), so memory holds a few parts whatever the batch. A part whose worker
        found other series or counts in its snapshot is read here from ``source``.
        """
        loop = asyncio.get_running_loop()
        parts = _parts(batch, model_points)
        ahead = iter(parts)
        # The parts being made, oldest first; a part's data is let go once it was handed on.
        running = collections.deque(loop.run_in_executor(self._pool, _chunk_data_in_worker, *part)
                                    for part in itertools.islice(ahead, self.count))
        try:
            for part, points in parts:
                made = await running.popleft()
                following = next(ahead, None)
                if following is not None:
                    running.append(loop.run_in_executor(self._pool, _chunk_data_in_worker, *following))
                if made is None:
                    async for piece in chunk_pieces(source, part, points, summaries):
                        yield piece
                else:
                    data, part_summaries = made
                    del made
                    summaries += part_summaries
                    yield data
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# A worker's share of a batch, in points (whole runs).
POINTS_PER_PART = 250_000


def _parts(batch: Batch, model_points: dict) -> list[tuple[Batch, dict]]:
    """The batch cut into parts of whole runs, each with the logged-model points of its runs.

    Part i covers the runs from its first series' run up to the next part's first one, so
    a run with logged-model points and no metric rows goes with the part whose range holds it.
    """
    # Run ids compared in lowercase: MySQL keeps a metric's run id as the client spelled it, and its
    # collation, which the reads' BETWEEN follows, takes two spellings for one run.
    starts = [0]
    size = 0
    for index, (run_id, _, count) in enumerate(batch.series):
        if size >= POINTS_PER_PART and run_id.lower() != batch.series[index - 1][0].lower():
            starts.append(index)
            size = 0
        size += count
    parts = []
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(batch.series)
        low = batch.low if number == 0 else batch.series[start][0]
        high = batch.high if end == len(batch.series) else batch.series[end - 1][0]
        below = batch.series[end][0].lower() if end < len(batch.series) else None
        points = {key: found for key, found in model_points.items()
                  if low.lower() <= key[0].lower() and (below is None or key[0].lower() < below)}
        parts.append((Batch(low, high, batch.series[start:end], batch.order, batch.index_from), points))
    return parts


# One per worker process: its event loop and its connection to the store.
_worker: tuple[asyncio.AbstractEventLoop, Source] | None = None


def _start_worker(uri: str) -> None:
    global _worker
    # A worker ends with the import, even one killed: its queues stay open in the other workers.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()
    # What a worker makes is freed by reference counts; see importer.py.
    gc.disable()
    loop = asyncio.new_event_loop()
    source = loop.run_until_complete(open_source(uri))
    _worker = (loop, source)
    atexit.register(_stop_worker)


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _stop_worker() -> None:
    if _worker is not None:
        loop, source = _worker
        with contextlib.suppress(Exception):
            loop.run_until_complete(source.close())
        loop.close()


def _chunk_data_in_worker(batch: Batch, model_points: dict) -> tuple[bytes, list[tuple]] | None:
    loop, source = _worker
    return loop.run_until_complete(_chunk_data(source, batch, model_points))


async def _chunk_data(source: Source, batch: Batch, model_points: dict) -> tuple[bytes, list[tuple]] | None:
    mine = await list_series(source, batch.low, batch.high, batch.index_from)
    if mine.series != batch.series or mine.order != batch.order:
        return None
    summaries: list[tuple] = []
    pieces = [piece async for piece in chunk_pieces(source, batch, model_points, summaries)]
    return b"".join(pieces), summaries


def default_worker_count() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
