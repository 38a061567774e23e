"""Metric points as chunks (sql/010_metric_chunks.sql): made from a flush's points, and read back.

A series is a run's points of one key with one logged model and dataset. It is
stored as chunks: rows holding many points as arrays in (step, timestamp, value)
order (steps and timestamps as 32-bit offsets from the chunk's first ones), with
their step and timestamp ranges and point count beside them. Readers plan from
those ranges and counts, then open only the chunks a page or a sample needs: a
page of a long history opens the chunks that hold it, and a sampled chart reads
its few hundred points by array subscript.

Points order as PostgreSQL orders them: by step, timestamp, then value, NaN
above every number and equal to itself. Rows of the table of earlier releases
(metric_rows) not yet converted by the compactor read as one chunk per series
that carries its arrays (chunk_id None).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby, islice, repeat
from math import isnan
from operator import attrgetter, le, lt, sub

import asyncpg

from gateway.mlflow.limits import INT64_MAX
from gateway.model import Metric, MetricColumns, MetricPoint

# A sealed chunk holds this many points; the compactor merges smaller ones up to it.
CHUNK_POINTS = 4096

CHUNK_COLUMNS = (
    "run_id", "key", "model_id", "dataset_name", "dataset_digest", "first_step", "last_step",
    "first_timestamp", "last_timestamp", "min_value", "max_value", "point_count", "sealed",
    "step_offsets", "timestamp_offsets", "metric_values",
)
_MIN_VALUE = CHUNK_COLUMNS.index("min_value")
_MAX_VALUE = CHUNK_COLUMNS.index("max_value")
# Offsets are int4: a chunk spans less than this many steps, and milliseconds.
_SPAN = 2**31

_ORDER = attrgetter("step", "timestamp", "value")
_STEP = attrgetter("step")
_TIMESTAMP = attrgetter("timestamp")
_VALUE = attrgetter("value")
_KIND = attrgetter("model_id", "dataset_name", "dataset_digest")
_MODEL_ID = attrgetter("model_id")
_DATASET_NAME = attrgetter("dataset_name")
_DATASET_DIGEST = attrgetter("dataset_digest")


def identity(step: int, timestamp: int, value: float) -> tuple:
    """What makes two points the same point (equal step, timestamp and value, a NaN equal to a
    NaN), which also sorts points in PostgreSQL's order (NaN above every number)."""
    return (step, timestamp, True, 0.0) if value != value else (step, timestamp, False, value)


def _nan_aware(point: MetricPoint) -> tuple:
    return identity(point.step, point.timestamp, point.value)


def arrange(points: list[MetricPoint]) -> list[MetricPoint]:
    """The points of one (run, key) in (step, timestamp, value) order, each distinct point once.

    Of two equal points the one naming a logged model is kept. Sorts in place.
    """
    return _arranged(points)[0]


def rising(steps: Sequence[int]) -> bool:
    """Whether each step is greater than the one before."""
    return all(map(lt, steps, islice(steps, 1, None)))


def _arranged(points: list[MetricPoint]) -> tuple[list[MetricPoint], list[int]]:
    """:func:`arrange`, and the arranged points' steps."""
    steps = list(map(_STEP, points))
    if rising(steps):
        # Steps already rising (a training loop's batches): nothing to sort or merge.
        return points, steps
    if len(set(steps)) == len(steps):
        # Distinct steps: the step alone orders them.
        points.sort(key=_STEP)
        steps.sort()
        return points, steps
    has_nan = any(map(isnan, map(_VALUE, points)))
    points.sort(key=_nan_aware if has_nan else _ORDER)
    kept = [points[0]]
    last = identity(points[0].step, points[0].timestamp, points[0].value)
    for point in points[1:]:
        this = identity(point.step, point.timestamp, point.value)
        if this != last:
            kept.append(point)
            last = this
        elif kept[-1].model_id is None and point.model_id is not None:
            kept[-1] = point
    return kept, list(map(_STEP, kept))


@dataclass(frozen=True, slots=True)
class KeySummary:
    """What a flush adds to a (run, key): its latest point, min and max (NaN left out), count."""

    latest: tuple
    min_value: float | None
    max_value: float | None
    count: int


def summary_of(points: Sequence[MetricPoint]) -> KeySummary:
    """The summary of arranged points (at least one)."""
    last = points[-1]
    return _summary((last.step, last.timestamp, last.value), list(map(_VALUE, points)))


def _summary(latest: tuple, values: list[float]) -> KeySummary:
    finite = [v for v in values if v == v] if any(map(isnan, values)) else values
    return KeySummary(
        latest=latest,
        min_value=min(finite) if finite else None,
        max_value=max(finite) if finite else None,
        count=len(values),
    )


def after(point: MetricPoint, stored: tuple) -> bool:
    """Whether ``point`` orders after the ``stored`` (step, timestamp, value)."""
    return _nan_aware(point) > identity(*stored)


def stretches(steps: list[int]) -> list[int]:
    """Where sorted steps break into stretches: the indexes that start one, and the length at the end.

    A break is a step gap far wider than the series' mean one (eight times): a
    flush carrying two clients' batches of steps 500-599 and 1200-1299 lands them as
    two chunks, so a later flush with steps 600-699 meets neither. Steps that run
    without gaps (a training loop's) make one stretch at no cost.
    """
    count = len(steps)
    span = steps[-1] - steps[0] if count else 0
    if count < 3 or span < count:
        return [0, count]
    wide = 8 * span // (count - 1)
    return [0, *[index for index in range(1, count) if steps[index] - steps[index - 1] > wide], count]


def _stretches_of_parts(parts: list[tuple], count: int) -> list[int]:
    """:func:`stretches` of the steps of ``parts`` laid end to end (each part's steps rising, the parts in
    order), looking inside a part only when its steps leave room for a wide gap."""
    span = parts[-1][0][-1] - parts[0][0][0]
    if count < 3 or span < count:
        return [0, count]
    wide = 8 * span // (count - 1)
    cuts = [0]
    start = 0
    previous = None
    for steps, _, _ in parts:
        size = len(steps)
        if previous is not None and steps[0] - previous > wide:
            cuts.append(start)
        # Gaps inside the part add up to its span beyond size - 1: a gap wider than
        # ``wide`` needs at least ``wide`` of it.
        if steps[-1] - steps[0] - (size - 1) >= wide:
            cuts += [start + index for index in range(1, size) if steps[index] - steps[index - 1] > wide]
        previous = steps[-1]
        start += size
    cuts.append(count)
    return cuts


def chunk_rows(run_id: str, key: str, points: Sequence[MetricPoint], *, size: int = CHUNK_POINTS) -> list[tuple]:
    """COPY rows for arranged points of one (run, key): a chunk per series and stretch, ``size`` points at most.

    A full chunk is sealed; smaller ones are left for the compactor.
    """
    return _chunk_rows(run_id, key, points, list(map(_STEP, points)), size)


def _chunk_rows(run_id: str, key: str, points: Sequence[MetricPoint], steps: list[int], size: int) -> list[tuple]:
    rows: list[tuple] = []
    if any(map(_MODEL_ID, points)) or any(map(_DATASET_NAME, points)) or any(map(_DATASET_DIGEST, points)):
        series: dict[tuple, list[MetricPoint]] = {}
        for point in points:
            series.setdefault(_KIND(point), []).append(point)
    else:
        # No logged model or dataset (the common case): one series, whose steps are known.
        series = {(None, None, None): points}
    for kind, members in series.items():
        if members is not points:
            steps = list(map(_STEP, members))
        timestamps = list(map(_TIMESTAMP, members))
        values = list(map(_VALUE, members))
        cuts = stretches(steps)
        for begin, end in zip(cuts, cuts[1:]):
            add_chunks(rows, run_id, key, kind, steps, timestamps, values, begin, end, size=size)
    return rows


def add_chunks(
    rows: list, run_id: str, key: str, kind: tuple, steps: list, timestamps: list, values: list, start: int,
    stop: int, *, size: int = CHUNK_POINTS, seal_last: bool = False, rising: bool = False,
) -> None:
    """Append COPY rows for points ``start`` to ``stop`` of a series' arrays (in point order), ``size`` a chunk.

    Full chunks are sealed, and the last one when ``seal_last`` (a chunk that can
    merge with nothing after it). ``kind`` is (model_id, dataset_name, dataset_digest).
    ``rising`` tells that no two of the steps are equal, so a chunk whose steps
    run without a gap has its offsets made without reading them.
    """
    for begin in range(start, stop, size):
        end = min(begin + size, stop)
        _add_chunk(rows, run_id, key, kind, steps, timestamps, values, begin, end,
                   end - begin >= size or (seal_last and end == stop), rising)


def _add_chunk(rows, run_id, key, kind, steps, timestamps, values, start, stop, sealed, rising=False) -> None:
    first_step = steps[start]
    count = stop - start
    stamps = timestamps[start:stop]
    # The extremes from a sorted copy: sorting timestamps that come in order (a
    # training loop's) only compares neighbours, a fifth of what min() and max() cost.
    ordered = sorted(stamps)
    first_timestamp, last_timestamp = ordered[0], ordered[-1]
    if (steps[stop - 1] - first_step >= _SPAN or last_timestamp - first_timestamp >= _SPAN) and count > 1:
        # Too wide for 32-bit offsets (rare): halves, sealed, as merging them again could not help.
        middle = (start + stop) // 2
        _add_chunk(rows, run_id, key, kind, steps, timestamps, values, start, middle, True, rising)
        _add_chunk(rows, run_id, key, kind, steps, timestamps, values, middle, stop, True, rising)
        return
    piece = values[start:stop]
    total = sum(piece)
    # A finite sum: no NaN (nor infinity) to leave out of the extremes, without a look at each value.
    finite = piece if total - total == 0.0 or not any(map(isnan, piece)) else [v for v in piece if v == v]
    if rising and steps[stop - 1] - first_step == count - 1:
        step_offsets = range(count)  # steps without a gap: 0, 1, 2, ...
    else:
        step_offsets = list(map(sub, steps[start:stop], repeat(first_step)))
    if first_timestamp == last_timestamp:
        timestamp_offsets = [0] * count
    else:
        timestamp_offsets = list(map(sub, stamps, repeat(first_timestamp)))
    rows.append((
        run_id, key, *kind, first_step, steps[stop - 1], first_timestamp, last_timestamp,
        min(finite) if finite else None, max(finite) if finite else None, count, sealed,
        step_offsets, timestamp_offsets, piece,
    ))


@dataclass(slots=True)
class KeyBatch:
    """A flush's new points of one (run, key), arranged, with their COPY rows and summary.

    ``first`` is the first point's (step, timestamp, value). The points are kept as
    MetricPoints, or as columns (key, steps, timestamps, values) for points that
    name no logged model or dataset, made into MetricPoints only when asked for.
    """

    rows: list[tuple]
    summary: KeySummary | None
    first: tuple | None
    _points: list[MetricPoint] | None = None
    _columns: tuple | None = None

    @property
    def points(self) -> list[MetricPoint]:
        if self._points is None:
            key, steps, timestamps, values = self._columns
            self._points = [MetricPoint(key, v, t, s) for s, t, v in zip(steps, timestamps, values)]
        return self._points

    @classmethod
    def of(cls, run_id: str, key: str, points: list[MetricPoint], moved: set | None = None) -> KeyBatch:
        """The batch of arranged points (see :func:`arrange`).

        ``moved`` holds the identities of points stored before that move to their
        logged model's series: written again, not counted again.
        """
        return cls._of(run_id, key, points, list(map(_STEP, points)), moved)

    @classmethod
    def _of(cls, run_id: str, key: str, points: list[MetricPoint], steps: list[int], moved: set | None) -> KeyBatch:
        if not points:
            return cls([], None, None, points)
        rows = _chunk_rows(run_id, key, points, steps, CHUNK_POINTS)
        first = (points[0].step, points[0].timestamp, points[0].value)
        if moved:
            new = [p for p in points if identity(p.step, p.timestamp, p.value) not in moved]
            return cls(rows, summary_of(new) if new else None, first, points)
        last = points[-1]
        return cls(rows, _summary_of_rows(rows, (last.step, last.timestamp, last.value), len(points)), first, points)

    @classmethod
    def of_parts(cls, run_id: str, key: str, parts: list[tuple[list[int], list[int], list[float]]]) -> KeyBatch:
        """The batch of points that name no logged model or dataset, given as columns (steps, timestamps,
        values), a part a request, the parts and their points in any order. The lists are not changed.

        When each part's steps rise and the parts do not overlap (a training loop's
        batches, in whatever order they came), the parts are laid end to end in step
        order: nothing is sorted or compared point by point. Otherwise all the points
        are arranged together.
        """
        ordered = _ordered_parts(parts)
        if ordered is None:
            steps, timestamps, values = _concatenated(parts)
            steps, timestamps, values = _arranged_columns(steps, timestamps, values)
            cuts = stretches(steps)
            rising = False
        else:
            steps, timestamps, values = _concatenated(ordered)
            cuts = _stretches_of_parts(ordered, len(steps))
            rising = True
        rows: list[tuple] = []
        for begin, end in zip(cuts, cuts[1:]):
            add_chunks(rows, run_id, key, (None, None, None), steps, timestamps, values, begin, end, rising=rising)
        latest = (steps[-1], timestamps[-1], values[-1])
        return cls(
            rows, _summary_of_rows(rows, latest, len(steps)), (steps[0], timestamps[0], values[0]),
            _columns=(key, steps, timestamps, values),
        )


def _ordered_parts(parts: list[tuple]) -> list[tuple] | None:
    """The parts in step order if each one's steps rise and no two parts' steps overlap, else None."""
    if not all(rising(part[0]) for part in parts):
        return None
    if len(parts) == 1:
        return parts
    ordered = sorted(parts, key=_part_start)
    for earlier, later in zip(ordered, islice(ordered, 1, None)):
        if earlier[0][-1] >= later[0][0]:
            return None
    return ordered


def _part_start(part: tuple) -> int:
    return part[0][0]


def _concatenated(parts: list[tuple]) -> tuple[list, list, list]:
    if len(parts) == 1:
        return parts[0]
    steps: list[int] = []
    timestamps: list[int] = []
    values: list[float] = []
    for part in parts:
        steps += part[0]
        timestamps += part[1]
        values += part[2]
    return steps, timestamps, values


def _summary_of_rows(rows: list[tuple], latest: tuple, count: int) -> KeySummary:
    # The extremes are those of the chunks just made (their finite values), not counted again.
    lows = [row[_MIN_VALUE] for row in rows if row[_MIN_VALUE] is not None]
    highs = [row[_MAX_VALUE] for row in rows if row[_MAX_VALUE] is not None]
    return KeySummary(
        latest=latest, min_value=min(lows) if lows else None, max_value=max(highs) if highs else None, count=count
    )


def _arranged_columns(steps: list[int], timestamps: list[int], values: list[float]) -> tuple[list, list, list]:
    """:func:`arrange` for points given as columns: new lists unless they are in order already."""
    if rising(steps):
        return steps, timestamps, values
    if len(set(steps)) == len(steps):
        order = sorted(range(len(steps)), key=steps.__getitem__)
    else:
        identities = list(map(identity, steps, timestamps, values))
        order = sorted(range(len(steps)), key=identities.__getitem__)
        order = [i for n, i in enumerate(order) if n == 0 or identities[i] != identities[order[n - 1]]]
    return list(map(steps.__getitem__, order)), list(map(timestamps.__getitem__, order)), list(
        map(values.__getitem__, order)
    )


def batch_by_key(writes: Iterable) -> dict[tuple[str, str], KeyBatch]:
    """The metric points of RunWrites as a KeyBatch per (run, key)."""
    by_key: dict[tuple[str, str], list[MetricPoint]] = {}
    columns_of: dict[tuple[str, str], list[tuple]] = {}
    for write in writes:
        run_id = write.run_id
        if write.metrics.__class__ is MetricColumns:
            for key, columns in write.metrics.by_key.items():
                parts = columns_of.get((run_id, key))
                if parts is None:
                    columns_of[(run_id, key)] = [columns]
                else:
                    parts.append(columns)
            continue
        # Grouped by a dict in arrival order: half the cost of sorting a batch by key.
        of_key: dict[str, list[MetricPoint]] = {}
        for point in write.metrics:
            group = of_key.get(point.key)
            if group is None:
                of_key[point.key] = [point]
            else:
                group.append(point)
        for key, points in of_key.items():
            group = by_key.get((run_id, key))
            if group is None:
                by_key[(run_id, key)] = points
            else:
                group.extend(points)
    batches: dict[tuple[str, str], KeyBatch] = {}
    for series, parts in columns_of.items():
        if series in by_key:
            # The key also has points naming a logged model or dataset: all go as MetricPoints.
            by_key[series].extend(
                MetricPoint(series[1], v, t, s) for steps, timestamps, values in parts
                for s, t, v in zip(steps, timestamps, values)
            )
        else:
            batches[series] = KeyBatch.of_parts(series[0], series[1], parts)
    for series, points in by_key.items():
        batches[series] = KeyBatch._of(series[0], series[1], *_arranged(points), None)
    return batches


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
    # Once opened: the points' steps and timestamps as offsets from these bases (a stored
    # chunk's first step and timestamp; 0 for rows of metric_rows), and their values.
    step_offsets: list | None = None
    timestamp_offsets: list | None = None
    values: list | None = None
    step_base: int = 0
    timestamp_base: int = 0

    @property
    def steps(self) -> list[int]:
        base = self.step_base
        return [base + offset for offset in self.step_offsets]

    @property
    def timestamps(self) -> list[int]:
        base = self.timestamp_base
        return [base + offset for offset in self.timestamp_offsets]

    def points(self) -> list[tuple]:
        """The chunk's points as (step, timestamp, value, chunk), in (step, timestamp, value) order."""
        return [(s, t, v, self) for s, t, v in zip(self.steps, self.timestamps, self.values)]


# Stored chunks come without their arrays; rows of metric_rows with theirs (absolute values).
_CHUNKS = """
SELECT run_id, chunk_id, model_id, dataset_name, dataset_digest, first_step, last_step,
       first_timestamp, last_timestamp, point_count, steps, timestamps, metric_values
FROM metric_series WHERE run_id = ANY($1::uuid[]) AND key = $2
"""

_ARRAYS = """
SELECT c.chunk_id, c.step_offsets, c.timestamp_offsets, c.metric_values
FROM unnest($1::uuid[], $3::bigint[]) AS w(run_id, chunk_id)
JOIN metric_chunks c ON c.run_id = w.run_id AND c.key = $2 AND c.chunk_id = w.chunk_id
"""

# One point of a chunk by its place (1-based): a chart's sample opens each array once.
_ELEMENTS = """
SELECT w.chunk_id, w.place, c.first_step + c.step_offsets[w.place] AS step,
       c.first_timestamp + c.timestamp_offsets[w.place] AS timestamp, c.metric_values[w.place] AS value
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
    closed = {chunk.chunk_id: chunk for chunk in chunks if chunk.values is None}
    if not closed:
        return
    rows = await conn.fetch(_ARRAYS, [c.run_id for c in closed.values()], key, list(closed))
    for chunk_id, step_offsets, timestamp_offsets, values in rows:
        chunk = closed[chunk_id]
        chunk.step_offsets, chunk.timestamp_offsets, chunk.values = step_offsets, timestamp_offsets, values
        chunk.step_base, chunk.timestamp_base = chunk.first_step, chunk.first_timestamp


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


def _by_time(point: tuple) -> tuple:
    """A sort key of (step, timestamp, value, ...) in get-history's order: timestamp, step, value."""
    return identity(point[1], point[0], point[2])


def _in_time_order(group: list[Chunk]) -> list[tuple]:
    """A group's points in get-history's order (timestamp, step, value), as runs of one series:
    (chunk, step offsets, timestamp offsets, values, step base, timestamp base)."""
    if len(group) == 1:
        chunk = group[0]
        offsets = chunk.timestamp_offsets
        # A chunk is in step order; where its timestamps never go back, that is time order too.
        if all(map(le, offsets, offsets[1:])):
            return [(chunk, chunk.step_offsets, offsets, chunk.values, chunk.step_base, chunk.timestamp_base)]
    merged = [point for chunk in group for point in chunk.points()]
    merged.sort(key=_by_time)
    runs = []
    for _, run in groupby(merged, _series_of_point):
        run = list(run)
        runs.append((run[0][3], [p[0] for p in run], [p[1] for p in run], [p[2] for p in run], 0, 0))
    return runs


def _series_of_point(point: tuple) -> tuple:
    chunk = point[3]
    return chunk.model_id, chunk.dataset_name, chunk.dataset_digest


def _first_time(chunk: Chunk) -> int:
    return chunk.first_timestamp


def _last_time(chunk: Chunk) -> int:
    return chunk.last_timestamp


async def history(
    conn: asyncpg.Connection, chunks: list[Chunk], key: str, offset: int, limit: int | None,
    run_id: str | None = None, *, with_series: bool = True,
) -> list[Metric]:
    """Points ``offset`` to ``offset + limit`` of a series in (timestamp, step, value) order, as MLflow
    shows them (with the run id if given; with their model and dataset when ``with_series``).

    ``chunks`` are all the series' chunks (see :func:`chunks_of`); only the groups
    of them holding that stretch are opened.
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
    return _page(key, wanted, skip, limit, run_id, with_series)


# The groups of a run's chunks of a key (as clusters() groups them by time) that hold points $3
# up to $4 (exclusive) in get-history's order, with their arrays and the place of the first
# group's first point. Planned in the database, so that a page reads the few chunks it shows and
# not the whole series' list: a chunk starts a group when it begins after every chunk before it
# (by first timestamp) has ended. Stored chunks come without their arrays in metric_series and
# take them from metric_chunks; rows of metric_rows come with theirs. No rows when the run is not
# stored, so a page with points is a page of a stored run.
_PAGE = """
WITH series AS (
    SELECT chunk_id, model_id, dataset_name, dataset_digest, first_step, last_step, first_timestamp,
           last_timestamp, point_count, steps, timestamps, metric_values,
           max(last_timestamp) OVER (ORDER BY first_timestamp, chunk_id
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM metric_series
    WHERE run_id = $1 AND key = $2 AND EXISTS (SELECT FROM runs WHERE run_id = $1)
), grouped AS (
    SELECT *, count(*) FILTER (WHERE reach IS NULL OR first_timestamp > reach)
                  OVER (ORDER BY first_timestamp, chunk_id ROWS UNBOUNDED PRECEDING) AS place
    FROM series
), counted AS (
    SELECT *, sum(point_count) OVER (ORDER BY place) AS group_end,
              sum(point_count) OVER (PARTITION BY place) AS group_count,
              sum(point_count) OVER () AS total
    FROM grouped
)
SELECT s.chunk_id, s.model_id, s.dataset_name, s.dataset_digest, s.first_step, s.last_step,
       s.first_timestamp, s.last_timestamp, s.point_count, s.steps, s.timestamps, s.metric_values,
       c.step_offsets, c.timestamp_offsets, c.metric_values,
       s.place, s.group_end - s.group_count AS group_start, s.total
FROM counted s LEFT JOIN metric_chunks c ON c.run_id = $1 AND c.key = $2 AND c.chunk_id = s.chunk_id
WHERE s.group_end > $3 AND s.group_end - s.group_count < $4
ORDER BY s.place, s.first_timestamp, s.chunk_id
"""

async def history_page(
    conn: asyncpg.Connection, run_id: str, key: str, offset: int, limit: int | None
) -> tuple[list[Metric], int]:
    """Points ``offset`` to ``offset + limit`` of a run's key in (timestamp, step, value) order, as
    MLflow shows them, and how many points the key has (0 when the page is empty: ``offset``
    is past the end, the key has no points, or the run is not stored).

    The database picks the chunks that hold the page and sends only those, so a
    page costs the same wherever it starts, however many chunks the series has.
    """
    end = INT64_MAX if limit is None else min(offset + limit, INT64_MAX)  # bigint's end: no page ends further
    rows = await conn.fetch(_PAGE, run_id, key, offset, end)
    if not rows:
        return [], 0
    groups: list[list[Chunk]] = []
    place = None
    for row in rows:
        chunk = Chunk(run_id, *row[0:9])
        if row[0] is None:
            chunk.step_offsets, chunk.timestamp_offsets, chunk.values = row[9], row[10], row[11]
        else:
            chunk.step_offsets, chunk.timestamp_offsets, chunk.values = row[12], row[13], row[14]
            chunk.step_base, chunk.timestamp_base = chunk.first_step, chunk.first_timestamp
        if row[15] != place:
            place = row[15]
            groups.append([])
        groups[-1].append(chunk)
    first = rows[0]
    return _page(key, groups, offset - first[16], limit, None, True), first[17]


def _page(
    key: str, groups: list[list[Chunk]], skip: int, limit: int | None, run_id: str | None, with_series: bool
) -> list[Metric]:
    """Up to ``limit`` points of opened groups laid end to end, after the first ``skip``."""
    left = limit
    metrics: list[Metric] = []
    for group in groups:
        for chunk, steps, timestamps, values, step_base, time_base in _in_time_order(group):
            count = len(values)
            if skip >= count:
                skip -= count
                continue
            stop = count if left is None else min(count, skip + left)
            if skip or stop < count:
                steps, timestamps, values = steps[skip:stop], timestamps[skip:stop], values[skip:stop]
            skip = 0
            metrics += _metrics(
                key, run_id, chunk if with_series else None, steps, timestamps, values, step_base, time_base
            )
            if left is not None:
                left -= len(values)
                if left <= 0:
                    return metrics
    return metrics


def _metrics(
    key: str, run_id, chunk: Chunk | None, steps: list, timestamps: list, values: list, step_base: int, time_base: int
) -> list[Metric]:
    """Points as MLflow shows them; steps and timestamps are offsets from the bases."""
    # A float sum is NaN when a NaN is among the values (or both infinities): one C loop
    # decides the common case, the exact test runs only then.
    total = sum(values)
    if total != total:
        values = ["NaN" if v != v else v for v in values]  # as protobuf's JSON writes it
    if run_id is None and (chunk is None or (
            chunk.model_id is None and chunk.dataset_name is None and chunk.dataset_digest is None)):
        # Fields left out are None already: the short call builds the struct faster.
        return [Metric(key, v, time_base + t, step_base + s) for s, t, v in zip(steps, timestamps, values)]
    name, digest, model_id = (None, None, None) if chunk is None else (
        chunk.dataset_name, chunk.dataset_digest, chunk.model_id)
    return [
        Metric(key, v, time_base + t, step_base + s, name, digest, model_id, run_id)
        for s, t, v in zip(steps, timestamps, values)
    ]


# ---- a chart's sample (MLflow's get-history-bulk-interval) ----------------------------


def _first_step(chunk: Chunk) -> int:
    return chunk.first_step


def _last_step(chunk: Chunk) -> int:
    return chunk.last_step


def _tuple_order(point: tuple) -> tuple:
    return identity(point[0], point[1], point[2])


# More places than this in one chunk, and the chunk is read whole rather than by subscript.
_SUBSCRIPTS = 8


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
            if whole and group[0].values is None:
                segments.append((group[0].point_count, group[0]))
                continue
            points = [p for chunk in group for p in chunk.points() if low <= p[0] <= high]
            if len(group) > 1:
                points.sort(key=_tuple_order)
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
    # (run, index in the answer, source, place in the source)
    located: list[tuple[str, int, object, int]] = []
    per_chunk: dict[int, int] = {}
    for run_id, places in wanted_of.items():
        segments = segments_of[run_id]
        segment, seen = 0, 0
        for index, place in enumerate(places):
            while place >= seen + segments[segment][0]:
                seen += segments[segment][0]
                segment += 1
            source = segments[segment][1]
            located.append((run_id, index, source, place - seen))
            if isinstance(source, Chunk):
                per_chunk[source.chunk_id] = per_chunk.get(source.chunk_id, 0) + 1
    # Each subscript reads the chunk's arrays anew: a chunk many places fall in is read whole.
    crowded = {id(s) for _, _, s, _ in located if isinstance(s, Chunk) and per_chunk[s.chunk_id] > _SUBSCRIPTS}
    await open_chunks(conn, key, [s for _, _, s, _ in located if id(s) in crowded])
    opened: dict[int, list] = {}
    found: dict[str, list] = {run_id: [None] * len(places) for run_id, places in wanted_of.items()}
    reads: list[tuple[str, int, int, int]] = []  # run, chunk id, 1-based place, index in the answer
    for run_id, index, source, place in located:
        if isinstance(source, list):
            found[run_id][index] = source[place][:3]
        elif source.values is not None:
            points = opened.get(id(source))
            if points is None:
                points = opened[id(source)] = source.points()
            found[run_id][index] = points[place][:3]
        else:
            reads.append((run_id, source.chunk_id, place + 1, index))
    if reads:
        rows = await conn.fetch(
            _ELEMENTS, [r[0] for r in reads], key, [r[1] for r in reads], [r[2] for r in reads]
        )
        at = {(row["chunk_id"], row["place"]): (row["step"], row["timestamp"], row["value"]) for row in rows}
        for run_id, chunk_id, place, index in reads:
            found[run_id][index] = at[(chunk_id, place)]
    return found
