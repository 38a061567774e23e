"""A plain-Python reference for run search: filter and sort in-memory runs.

It states the meaning of a search without SQL, so tests can compare it with what
the compiled statements return. A run is a dict::

    {
        "run_id": "0123...cdef",          # 32 lowercase hex
        "name": "probe", "status": "RUNNING", "user_id": "", "artifact_uri": "",
        "lifecycle_stage": "active",
        "start_time": 1700000000000,      # int or None
        "end_time": None,                 # int or None
        "metrics": {"loss": {"value": 0.5, "min": 0.1, "max": 0.9}},  # min/max None when all NaN
        "params": {"lr": "0.1"},
        "tags": {"team": "a"},
        "datasets": [{"name": "d", "digest": "abc",
                      "tags": [{"key": "mlflow.data.context", "value": "train"}]}],
    }

The rules, as MLflow's SQL store applies them on PostgreSQL:

- A run lacking the key (metric, param, tag) fails every clause on it, except
  ``IS NULL``.
- NaN equals nothing and is ordered against nothing: every comparison with it
  is false except ``!=``. A missing min/max (all points NaN) counts as NaN.
- ``tags.mlflow.runName`` is the run's name.
- A dataset clause holds when any of the run's dataset inputs satisfies it.
- LIKE is PostgreSQL's: ``%`` any text, ``_`` one character, backslash escapes.
- Order: per key, runs with a value, then NaN, then without the key, whatever
  the direction; text by code point; then ``start_time`` descending (when not
  ordered by already, missing last), then ``run_id``.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable

from gateway.search import ast
from gateway.search.ast import Comparison, Entity, OrderKey
from gateway.mlflow.wire import DATASET_CONTEXT_TAG, RUN_NAME_TAG
from gateway.search.parser import parse_run_filter, parse_run_order_by

_COMPARE: dict[str, Callable[[object, object], bool]] = {
    ast.EQ: operator.eq,
    ast.NE: operator.ne,
    ast.LT: operator.lt,
    ast.LE: operator.le,
    ast.GT: operator.gt,
    ast.GE: operator.ge,
    ast.IN: lambda value, options: value in options,
    ast.NOT_IN: lambda value, options: value not in options,
}

_METRIC_FIELD = {ast.Aggregate.LATEST: "value", ast.Aggregate.MIN: "min", ast.Aggregate.MAX: "max"}


def like(text: str, pattern: str, case_insensitive: bool = False) -> bool:
    """PostgreSQL's LIKE (ILIKE when ``case_insensitive``).

    ILIKE compares the lower-cased texts, as PostgreSQL does; outside ASCII,
    Python's lower-casing may differ from the database locale's.
    """
    if case_insensitive:
        text, pattern = text.lower(), pattern.lower()
    regex = []
    characters = iter(pattern)
    for character in characters:
        if character == "\\":
            # A trailing lone backslash stands for itself.
            regex.append(re.escape(next(characters, "\\")))
        elif character == "%":
            regex.append(".*")
        elif character == "_":
            regex.append(".")
        else:
            regex.append(re.escape(character))
    return re.fullmatch("".join(regex), text, re.DOTALL) is not None


def _compare(value: object, clause: Comparison) -> bool:
    if clause.comparator == ast.LIKE:
        return like(value, clause.value)
    if clause.comparator == ast.ILIKE:
        return like(value, clause.value, case_insensitive=True)
    return _COMPARE[clause.comparator](value, clause.value)


def _metric_value(summary: dict, aggregate: ast.Aggregate) -> float:
    value = summary.get(_METRIC_FIELD[aggregate])
    return math.nan if value is None else float(value)


def _keyed_value(run: dict, entity: Entity, key: str) -> str | None:
    if entity is Entity.TAG and key == RUN_NAME_TAG:
        return run["name"]
    values = run["params"] if entity is Entity.PARAM else run["tags"]
    return values.get(key)


def _input_tags(dataset: dict) -> list[tuple[str, str]]:
    tags = dataset.get("tags") or []
    if isinstance(tags, dict):
        return list(tags.items())
    return [(tag["key"], tag["value"]) for tag in tags]


def clause_matches(clause: Comparison, run: dict) -> bool:
    """Whether ``run`` satisfies one parsed clause."""
    if clause.entity is Entity.METRIC:
        summary = run["metrics"].get(clause.key)
        if summary is None:
            return False
        return _compare(_metric_value(summary, clause.aggregate), clause)
    if clause.entity in (Entity.PARAM, Entity.TAG):
        value = _keyed_value(run, clause.entity, clause.key)
        if clause.comparator == ast.IS_NULL:
            return value is None
        if clause.comparator == ast.IS_NOT_NULL:
            return value is not None
        return value is not None and _compare(value, clause)
    if clause.entity is Entity.ATTRIBUTE:
        value = run["name"] if clause.key == "run_name" else run[clause.key]
        return value is not None and _compare(value, clause)
    datasets = run.get("datasets") or []
    if clause.key == "context":
        return any(
            _compare(tag_value, clause)
            for dataset in datasets
            for tag_key, tag_value in _input_tags(dataset)
            if tag_key == DATASET_CONTEXT_TAG
        )
    return any(_compare(dataset[clause.key], clause) for dataset in datasets)


def matches(filter_string: str | None, run: dict) -> bool:
    """Whether ``run`` satisfies a runs/search filter.

    Args:
        filter_string: MLflow's filter syntax (with MIN/MAX/LATEST); None or "" matches all.
        run: a run dict as described in this module's docstring.

    Returns:
        True when every clause holds.

    Raises:
        InvalidParameter: the filter does not parse.
    """
    return all(clause_matches(clause, run) for clause in parse_run_filter(filter_string))


def view_type_matches(run_view_type: str, run: dict) -> bool:
    """Whether a run's lifecycle stage is in the view (ACTIVE_ONLY, DELETED_ONLY, ALL)."""
    allowed = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": ("active", "deleted")}
    return run["lifecycle_stage"] in allowed[run_view_type]


@functools.total_ordering
class _Descending:
    """Inverts the order of the value it wraps."""

    __slots__ = ("value",)

    def __init__(self, value: object):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value


def _rank_and_value(order_key: OrderKey, run: dict) -> tuple[int, object]:
    """(0, value) when the run has a value, (1, None) for NaN or missing, (2, None) for a missing metric."""
    if order_key.entity is Entity.METRIC:
        summary = run["metrics"].get(order_key.key)
        if summary is None:
            return 2, None
        value = _metric_value(summary, order_key.aggregate)
        return (1, None) if math.isnan(value) else (0, value)
    if order_key.entity in (Entity.PARAM, Entity.TAG):
        value = _keyed_value(run, order_key.entity, order_key.key)
    elif order_key.key == "run_name":
        value = run["name"]
    else:
        value = run[order_key.key]
    return (1, None) if value is None else (0, value)


def _full_order(order_keys: tuple[OrderKey, ...]) -> list[OrderKey]:
    keys = list(order_keys)
    if not any(key.entity is Entity.ATTRIBUTE and key.key == "start_time" for key in keys):
        keys.append(OrderKey(Entity.ATTRIBUTE, "start_time", ascending=False))
    keys.append(OrderKey(Entity.ATTRIBUTE, "run_id", ascending=True))
    return keys


def sort_key(order_by: list[str] | None) -> Callable[[dict], tuple]:
    """A key function for ``sorted`` that orders runs as runs/search does.

    Args:
        order_by: MLflow's order_by clauses (with MIN/MAX); None for the default order.

    Returns:
        A function from a run dict to a tuple; ascending tuple order is the search order.

    Raises:
        InvalidParameter: an order_by clause does not parse.
    """
    keys = _full_order(parse_run_order_by(order_by))

    def key_of(run: dict) -> tuple:
        parts: list[object] = []
        for order_key in keys:
            rank, value = _rank_and_value(order_key, run)
            parts.append(rank)
            parts.append(value if order_key.ascending or value is None else _Descending(value))
        return tuple(parts)

    return key_of


def sort_runs(runs: list[dict], order_by: list[str] | None) -> list[dict]:
    """The runs in runs/search order (see :func:`sort_key`)."""
    return sorted(runs, key=sort_key(order_by))


def search(
    runs: list[dict],
    *,
    filter_string: str | None = None,
    run_view_type: str = "ACTIVE_ONLY",
    order_by: list[str] | None = None,
) -> list[dict]:
    """Filter and sort in-memory runs as runs/search would (experiment scoping left to the caller)."""
    selected = [run for run in runs if view_type_matches(run_view_type, run) and matches(filter_string, run)]
    return sort_runs(selected, order_by)
