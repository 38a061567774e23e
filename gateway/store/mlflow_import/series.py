"""A series of MLflow's metric points made into the gateway's chunks and summary. No I/O.

A series arrives in the store's index order (run, key, step) and is arranged in
the gateway's order: (step, timestamp, value), NaN above every number, where
MLflow stores NaN as 0 with ``is_nan`` set. The series that hold points of a
logged model are split by the model (and dataset) each point was logged with,
which MLflow keeps in another table.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import isnan, nan

from gateway.store import points


_MIN = points.CHUNK_COLUMNS.index("min_value")
_MAX = points.CHUNK_COLUMNS.index("max_value")


class SeriesBuilder:
    """The points of one (run, key, logged model, dataset), made into sealed chunk rows and a summary."""

    __slots__ = ("run_id", "key", "kind", "steps", "timestamps", "values", "has_nan", "latest", "min_value",
                 "max_value", "count")

    def __init__(self, run_id: str, key: str, kind: tuple = (None, None, None)):
        self.run_id = run_id
        self.key = key
        self.kind = kind
        self.steps: list[int] = []
        self.timestamps: list[int] = []
        self.values: list[float] = []
        self.has_nan = False
        self.latest: tuple | None = None
        self.min_value: float | None = None
        self.max_value: float | None = None
        self.count = 0

    def add(self, steps: Sequence[int], timestamps: Sequence[int], values: Sequence[float],
            nan_flags: Sequence | None = None) -> None:
        """Add points; ``nan_flags`` marks the rows MLflow stored as NaN, else the values hold NaN as NaN.

        The builder may keep (and later change) lists it is given.
        """
        if nan_flags is None:
            self.has_nan = self.has_nan or any(map(isnan, values))
        elif any(nan_flags):
            values = [nan if flag else value for value, flag in zip(values, nan_flags)]
            self.has_nan = True
        if self.steps:
            self.steps += steps
            self.timestamps += timestamps
            self.values += values
        else:  # lists given are taken over, not copied
            self.steps, self.timestamps, self.values = (
                part if isinstance(part, list) else list(part) for part in (steps, timestamps, values))

    def take(self, rows: list) -> int:
        """Append the COPY rows of every point added, in the gateway's order, and sum them up.

        Returns:
            how many points.
        """
        count = len(self.steps)
        if count == 0:
            return 0
        steps, timestamps, values = self.steps, self.timestamps, self.values
        self.steps, self.timestamps, self.values = [], [], []
        in_order = not self.has_nan and points.rising(steps)
        if not in_order:
            steps, timestamps, values = _in_gateway_order(steps, timestamps, values)
        self.latest = (steps[-1], timestamps[-1], values[-1])
        self.count += count
        first = len(rows)
        points.add_chunks(rows, self.run_id, self.key, self.kind, steps, timestamps, values, 0, count,
                          seal_last=True, rising=in_order)
        # The extremes of the finite values, from those of the chunks just made.
        for row in rows[first:]:
            low, high = row[_MIN], row[_MAX]
            if low is not None:
                self.min_value = low if self.min_value is None else min(self.min_value, low)
                self.max_value = high if self.max_value is None else max(self.max_value, high)
        self.has_nan = False
        return count


def _in_gateway_order(steps: list, timestamps: list, values: list) -> tuple[list, list, list]:
    order = sorted(range(len(steps)), key=lambda i: points.identity(steps[i], timestamps[i], values[i]))
    return [steps[i] for i in order], [timestamps[i] for i in order], [values[i] for i in order]


class KeySummary:
    """The metric_summaries row of a (run, key), over all its series."""

    __slots__ = ("latest", "min_value", "max_value", "count")

    def __init__(self):
        self.latest: tuple | None = None
        self.min_value: float | None = None
        self.max_value: float | None = None
        self.count = 0

    def merge(self, series: SeriesBuilder) -> None:
        """Fold in a series whose points were all taken."""
        if series.count == 0:
            return
        if self.latest is None or points.identity(*series.latest) > points.identity(*self.latest):
            self.latest = series.latest
        if series.min_value is not None:
            self.min_value = series.min_value if self.min_value is None else min(self.min_value, series.min_value)
            self.max_value = series.max_value if self.max_value is None else max(self.max_value, series.max_value)
        self.count += series.count

    def record(self, run_id: str, key: str) -> tuple:
        """The row as metric_summaries' columns (run_id, key, step, timestamp, value, min, max, count)."""
        step, timestamp, value = self.latest
        return (run_id, key, step, timestamp, value, self.min_value, self.max_value, self.count)


SUMMARY_COLUMNS = ("run_id", "key", "step", "timestamp", "value", "min_value", "max_value", "point_count")


def split_by_model(
    run_id: str, key: str, steps: Sequence[int], timestamps: Sequence[int], values: Sequence[float],
    nan_flags: Sequence, model_points: dict[tuple, tuple],
) -> list[SeriesBuilder]:
    """A (run, key)'s points split into series by the logged model (and dataset) each was logged with.

    ``model_points`` maps (step, timestamp, value as MLflow stored it) to
    (model_id, dataset_name, dataset_digest), from MLflow's logged_model_metrics;
    its entries no metric row matches are added as points of their own (MLflow
    keeps a logged model's metric there even when the run's row is missing).
    """
    by_kind: dict[tuple, SeriesBuilder] = {}
    left = dict(model_points)
    rows: dict[tuple, list] = {}
    for step, timestamp, value, flag in zip(steps, timestamps, values, nan_flags):
        kind = left.pop((step, timestamp, value), (None, None, None))
        rows.setdefault(kind, []).append((step, timestamp, nan if flag else value))
    for (step, timestamp, value), kind in left.items():
        rows.setdefault(kind, []).append((step, timestamp, value))
    for kind, found in rows.items():
        found.sort(key=lambda p: points.identity(*p))
        series = by_kind[kind] = SeriesBuilder(run_id, key, kind)
        series.add([p[0] for p in found], [p[1] for p in found], [p[2] for p in found], [False] * len(found))
        series.has_nan = any(isnan(p[2]) for p in found)
    return list(by_kind.values())
