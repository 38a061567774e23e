"""The parsed form of search filters and order_by clauses.

A filter is a tuple of :class:`Comparison` joined by AND; an order_by list is a
tuple of :class:`OrderKey`. Keys are stored after MLflow's alias translation
(``created`` is ``start_time``, ``run name`` is ``run_name``), comparators in
upper case, so the compiler and the evaluator never see the spellings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Entity(enum.StrEnum):
    """What a key names. The values are MLflow's canonical names, used in its messages."""

    METRIC = "metric"
    PARAM = "parameter"
    TAG = "tag"
    ATTRIBUTE = "attribute"
    DATASET = "dataset"


class Aggregate(enum.StrEnum):
    """Which summary of a metric a comparison or a sort reads.

    ``LATEST`` is the value of the latest point (what plain ``metrics.k`` means),
    ``MIN`` and ``MAX`` are over the key's non-NaN values.
    """

    LATEST = "LATEST"
    MIN = "MIN"
    MAX = "MAX"


# Comparators, canonical spelling.
EQ = "="
NE = "!="
LT = "<"
LE = "<="
GT = ">"
GE = ">="
LIKE = "LIKE"
ILIKE = "ILIKE"
IN = "IN"
NOT_IN = "NOT IN"
IS_NULL = "IS NULL"
IS_NOT_NULL = "IS NOT NULL"

NUMERIC_COMPARATORS = frozenset({EQ, NE, LT, LE, GT, GE})

# A comparison's right-hand side: a number, a string, a list of strings (IN and
# NOT IN) or nothing (IS NULL and IS NOT NULL).
Value = float | int | str | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One clause of a filter: ``<entity>.<key> <comparator> <value>``.

    Attributes:
        entity: what the key names.
        key: the key, unquoted, with attribute aliases resolved.
        comparator: one of the comparator constants of this module.
        value: float for metrics, int or float for numeric attributes, str for
            strings, a tuple of str for IN / NOT IN, None for IS [NOT] NULL.
            LIKE / ILIKE patterns follow PostgreSQL (``%``, ``_``, backslash
            escapes the next character); a trailing lone backslash has already
            been doubled, so it matches a backslash.
        aggregate: for metrics, which summary the clause compares; None otherwise.
        position: offset of the clause in the filter text (0-based).
    """

    entity: Entity
    key: str
    comparator: str
    value: Value
    aggregate: Aggregate | None = None
    position: int = 0


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One order_by clause.

    Attributes:
        entity: what the key names (metric, parameter, tag or attribute).
        key: the key, unquoted, with attribute aliases resolved.
        ascending: the direction; missing values and NaN sort last either way.
        aggregate: for metrics, which summary to sort by; None otherwise.
    """

    entity: Entity
    key: str
    ascending: bool = True
    aggregate: Aggregate | None = None
