"""Metric points as chunks (sql/010_metric_chunks.sql): made from a flush's points, and read back.

A series is a run's points of one key with one logged model and dataset. It is
stored as chunks: rows holding many points as arrays (steps, timestamps, values)
in (step, timestamp, value) order, with their step and timestamp ranges and point
count beside them. Readers plan from those ranges and counts, then open only the
chunks a page or a sample needs: a page of a long history opens the chunks that
hold it, and a sampled chart reads its few hundred points by array subscript.

Points order as PostgreSQL orders them: by step, timestamp, then value, NaN
above every number and equal to itself. Rows of the table of earlier releases
(metric_rows) not yet converted by the compactor read as one chunk per series
that carries its arrays (chunk_id None).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

import asyncpg

from gateway.model import Metric

# A sealed chunk holds this many points; the compactor merges smaller ones up to it.
CHUNK_POINTS = 4096

CHUNK_COLUMNS = (
    "run_id", "key", "model_id", "dataset_name", "dataset_digest", "first_step", "last_step",
    "first_timestamp", "last_timestamp", "min_value", "max_value", "point_count", "sealed",
    "steps", "timestamps", "metric_values",
)

# A point in a flush or a chunk: (step, timestamp, value, model_id, dataset_name, dataset_digest).
_BY_POINT = itemgetter(0, 1, 2)


def _nan_aware(point) -> tuple:
    value = point[2]
    return (point[0], point[1], True, 0.0) if value != value else (point[0], point[1], False, value)


def _same(a, b) -> bool:
    """Equal (step, timestamp, value), a NaN equal to a NaN."""
    return a[0] == b[0] and a[1] == b[1] and (a[2] == b[2] or (a[2] != a[2] and b[2] != b[2]))


def point_order(point) -> tuple:
    """A sort key of (step, timestamp, value, ...) tuples in PostgreSQL's order (NaN highest)."""
    return _nan_aware(point)


def sort_points(points: list, has_nan: bool) -> None:
    """Sort points in place by (step, timestamp, value); ties keep a point naming a model first."""
    if has_nan:
        points.sort(key=lambda p: (*_nan_aware(p), p[3] is None))
    else:
        points.sort(key=lambda p: (p[0], p[1], p[2], p[3] is None))


def distinct_points(points: list) -> list:
    """Sorted points with exact duplicates left out (the first of each kept)."""
    if len(points) < 2:
        return points
    kept = [points[0]]
    previous = points[0]
    for point in points[1:]:
        if not _same(point, previous):
            kept.append(point)
            previous = point
    return kept


@dataclass(frozen=True, slots=True)
class KeySummary:
    """What a flush adds to a (run, key): its first and latest point, min and max (NaN left out), count."""

    first: tuple
    latest: tuple
    min_value: float | None
    max_value: float | None
    count: int


def summary_of(points: Sequence) -> KeySummary:
    """The summary of sorted, distinct points (at least one)."""
    values = [p[2] for p in points]
    finite = [v for v in values if v == v]
    return KeySummary(
        first=points[0][:3],
        latest=points[-1][:3],
        min_value=min(finite) if finite else None,
        max_value=max(finite) if finite else None,
        count=len(points),
    )


def after(point: tuple, stored: tuple) -> bool:
    """Whether ``point`` (step, timestamp, value) orders after ``stored``."""
    return _nan_aware(point) > _nan_aware(stored)


def chunk_rows(run_id: str, key: str, points: Sequence, *, size: int = CHUNK_POINTS) -> list[tuple]:
    """COPY rows for sorted points of one (run, key): a chunk per series and ``size`` points.

    Points of one series go together; a full chunk is sealed, a smaller one is left
    for the compactor.
    """
    series: dict[tuple, list] = {}
    for point in points:
        series.setdefault(point[3:6], []).append(point)
    rows = []
    for (model_id, dataset_name, dataset_digest), members in series.items():
        for start in range(0, len(members), size):
            piece = members[start : start + size]
            rows.append(_chunk_row(run_id, key, model_id, dataset_name, dataset_digest, piece, len(piece) >= size))
    return rows


def _chunk_row(run_id, key, model_id, dataset_name, dataset_digest, points, sealed: bool) -> tuple:
    steps = [p[0] for p in points]
    timestamps = [p[1] for p in points]
    values = [p[2] for p in points]
    finite = [v for v in values if v == v]
    return (
        run_id, key, model_id, dataset_name, dataset_digest, steps[0], steps[-1], min(timestamps), max(timestamps),
        min(finite) if finite else None, max(finite) if finite else None, len(points), sealed,
        steps, timestamps, values,
    )


# ---- reading ------------------------------------------------------------------------


@dataclass(slots=True)
class Chunk:
    """A stored chunk's ranges and count; its arrays once opened (rows of metric_rows come opened)."""

    run_id: str
    chunk_id: int | None
    model_id: str | None
    dataset_name: str | None
    dataset_digest: str | None
    first_step: int
    last_step: int
    first_timestamp: int
    last_timestamp: int
    point_count: int
    steps: list | None = None
    timestamps: list | None = None
    values: list | None = None

    def points(self) -> list[tuple]:
        """The chunk's points as (step, timestamp, value, chunk), in (step, timestamp, value) order."""
        return [(s, t, v, self) for s, t, v in zip(self.steps, self.timestamps, self.values)]


_CHUNKS = """
SELECT run_id, chunk_id, model_id, dataset_name, dataset_digest, first_step, last_step,
       first_timestamp, last_timestamp, point_count,
       CASE WHEN chunk_id IS NULL THEN steps END AS steps,
       CASE WHEN chunk_id IS NULL THEN timestamps END AS timestamps,
       CASE WHEN chunk_id IS NULL THEN metric_values END AS metric_values
FROM metric_series WHERE run_id = ANY($1::uuid[]) AND key = $2
"""

_ARRAYS = """
SELECT c.chunk_id, c.steps, c.timestamps, c.metric_values
FROM unnest($1::uuid[], $3::bigint[]) AS w(run_id, chunk_id)
JOIN metric_chunks c ON c.run_id = w.run_id AND c.key = $2 AND c.chunk_id = w.chunk_id
"""

# One point of a chunk by its place (1-based): a chart's sample opens each array once.
_ELEMENTS = """
SELECT w.chunk_id, w.place, c.steps[w.place] AS step, c.timestamps[w.place] AS timestamp,
       c.metric_values[w.place] AS value
FROM unnest($1::uuid[], $3::bigint[], $4::integer[]) AS w(run_id, chunk_id, place)
JOIN metric_chunks c ON c.run_id = w.run_id AND c.key = $2 AND c.chunk_id = w.chunk_id
"""


async def chunks_of(conn: asyncpg.Connection, run_ids: Sequence[str], key: str) -> dict[str, list[Chunk]]:
    """The chunks of a key in each run, by run id (runs without any left out), arrays unopened."""
    by_run: dict[str, list[Chunk]] = {}
    for row in await conn.fetch(_CHUNKS, run_ids, key):
        run_id = row[0].hex
        by_run.setdefault(run_id, []).append(Chunk(run_id, *row[1:10], *row[10:13]))
    return by_run


async def open_chunks(conn: asyncpg.Connection, key: str, chunks: Iterable[Chunk]) -> None:
    """Read the arrays of the chunks not yet opened."""
    closed = {chunk.chunk_id: chunk for chunk in chunks if chunk.steps is None}
    if not closed:
        return
    rows = await conn.fetch(_ARRAYS, [c.run_id for c in closed.values()], key, list(closed))
    for chunk_id, steps, timestamps, values in rows:
        chunk = closed[chunk_id]
        chunk.steps, chunk.timestamps, chunk.values = steps, timestamps, values


def clusters(chunks: Iterable[Chunk], low, high) -> list[list[Chunk]]:
    """Chunks grouped where their ranges (``low(c)`` to ``high(c)``, inclusive) meet, in range order.

    Every point of a group orders before every point of the next, so a group's
    points are merged and the groups laid end to end.
    """
    groups: list[list[Chunk]] = []
    reach = None
    for chunk in sorted(chunks, key=low):
        if groups and low(chunk) <= reach:
            groups[-1].append(chunk)
            reach = max(reach, high(chunk))
        else:
            groups.append([chunk])
            reach = high(chunk)
    return groups


def _by_time(point) -> tuple:
    value = point[2]
    return (point[1], point[0], True, 0.0) if value != value else (point[1], point[0], False, value)


def _in_time_order(group: list[Chunk]) -> list[tuple]:
    """A group's points in get-history's order: timestamp, step, value."""
    if len(group) == 1:
        timestamps = group[0].timestamps
        # A chunk is in step order; where its timestamps never go back, that is time order too.
        if all(a <= b for a, b in zip(timestamps, timestamps[1:])):
            return group[0].points()
    merged = [point for chunk in group for point in chunk.points()]
    merged.sort(key=_by_time)
    return merged


def _first_time(chunk: Chunk) -> int:
    return chunk.first_timestamp


def _last_time(chunk: Chunk) -> int:
    return chunk.last_timestamp


async def history(
    conn: asyncpg.Connection, chunks: list[Chunk], key: str, offset: int, limit: int | None
) -> list[tuple]:
    """Points ``offset`` to ``offset + limit`` of a series in (timestamp, step, value) order.

    Only the groups of chunks holding that stretch are opened, so a page costs the
    same wherever it starts. Points are (step, timestamp, value, chunk).
    """
    wanted: list[list[Chunk]] = []
    start = 0
    skip = 0
    end = None if limit is None else offset + limit
    for group in clusters(chunks, _first_time, _last_time):
        count = sum(chunk.point_count for chunk in group)
        if start + count > offset:
            if not wanted:
                skip = offset - start
            wanted.append(group)
        start += count
        if end is not None and start >= end:
            break
    await open_chunks(conn, key, [chunk for group in wanted for chunk in group])
    points = [point for group in wanted for point in _in_time_order(group)]
    return points[skip : None if limit is None else skip + limit]


def metric_of(key: str, point: tuple, run_id: str | None = None, *, with_series: bool = True) -> Metric:
    """A stored point (step, timestamp, value, chunk) as MLflow shows it."""
    step, timestamp, value, chunk = point
    if with_series:
        return Metric(
            key, "NaN" if value != value else value, timestamp, step,
            dataset_name=chunk.dataset_name, dataset_digest=chunk.dataset_digest, model_id=chunk.model_id,
            run_id=run_id,
        )
    return Metric(key, "NaN" if value != value else value, timestamp, step, run_id=run_id)


# ---- a chart's sample (MLflow's get-history-bulk-interval) ----------------------------


def _first_step(chunk: Chunk) -> int:
    return chunk.first_step


def _last_step(chunk: Chunk) -> int:
    return chunk.last_step


def _bucket_starts(total: int, buckets: int) -> list[int]:
    """Where each of ``buckets`` buckets over ``total`` ordered rows starts, as SQL's ntile() cuts them."""
    size, extra = divmod(total, buckets)
    return [b * size + min(b, extra) for b in range(buckets)]


async def sample(
    conn: asyncpg.Connection, chunks_by_run: dict[str, list[Chunk]], key: str, max_results: int, low: int, high: int
) -> dict[str, list[tuple]]:
    """Per run, up to ``max_results`` of its points with steps in [low, high], as MLflow samples them.

    The points in (step, timestamp, value) order are cut into ``max_results``
    buckets as ntile() cuts rows; the first point of each is kept, and the last
    point always (in place of the last sampled one when the sample is full). A
    series of at most ``max_results`` points comes whole. Points are (step,
    timestamp, value).

    Chunk counts place each wanted point in its chunk, and the points are read by
    subscript; only chunks whose step ranges overlap others, or that cross the
    step bounds, are opened whole.
    """
    layouts: dict[str, list] = {}
    to_open: list[Chunk] = []
    for run_id, chunks in chunks_by_run.items():
        inside = [c for c in chunks if c.last_step >= low and c.first_step <= high]
        layout = []
        for group in clusters(inside, _first_step, _last_step):
            whole = len(group) == 1 and group[0].first_step >= low and group[0].last_step <= high
            layout.append((group, whole))
            if not whole:
                to_open.extend(group)
        layouts[run_id] = layout
    await open_chunks(conn, key, to_open)

    # Each run's series as segments in order: (count, chunk) unopened, (count, points) opened.
    segments_of: dict[str, list] = {}
    total_of: dict[str, int] = {}
    for run_id, layout in layouts.items():
        segments = []
        for group, whole in layout:
            if whole and group[0].steps is None:
                segments.append((group[0].point_count, group[0]))
                continue
            points = [p for chunk in group for p in chunk.points() if low <= p[0] <= high]
            if len(group) > 1:
                points.sort(key=_nan_aware)
            segments.append((len(points), points))
        segments_of[run_id] = segments
        total_of[run_id] = sum(count for count, _ in segments)

    # The places wanted in each run, then where they fall.
    wanted_of: dict[str, list[int]] = {}
    for run_id, total in total_of.items():
        if total == 0:
            continue
        if total <= max_results:
            wanted_of[run_id] = list(range(total))
        else:
            places = _bucket_starts(total, max_results)
            places[-1] = total - 1
            wanted_of[run_id] = places
    found: dict[str, list] = {}
    reads: list[tuple[str, int, int, int]] = []  # run, chunk id, 1-based place, index in the answer
    for run_id, places in wanted_of.items():
        answer: list = [None] * len(places)
        found[run_id] = answer
        segments = segments_of[run_id]
        segment, seen = 0, 0
        for index, place in enumerate(places):
            while place >= seen + segments[segment][0]:
                seen += segments[segment][0]
                segment += 1
            source = segments[segment][1]
            if isinstance(source, list):
                answer[index] = source[place - seen][:3]
            else:
                reads.append((run_id, source.chunk_id, place - seen + 1, index))
    if reads:
        rows = await conn.fetch(
            _ELEMENTS, [r[0] for r in reads], key, [r[1] for r in reads], [r[2] for r in reads]
        )
        at = {(row["chunk_id"], row["place"]): (row["step"], row["timestamp"], row["value"]) for row in rows}
        for run_id, chunk_id, place, index in reads:
            found[run_id][index] = at[(chunk_id, place)]
    return found
