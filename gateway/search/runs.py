"""runs/search (and the CSV export's filter) compiled into parameterised PostgreSQL.

The SQL text depends only on the shape of the search (which clauses, which
order keys); every value the client sent, keys included, is a ``$n``
placeholder with an explicit cast, and every identifier comes from the tables
below. The same search shape therefore always yields the same text, which keeps
asyncpg's prepared-statement cache warm.

Ordering follows MLflow's SQL store: each order key sorts rows that have a
value first, then NaN (metrics), then rows lacking the key, in either
direction; after the keys, ``start_time DESC`` (unless ordered by already) and
``run_id``. Text sorts by code point (``COLLATE "C"``), the same on every
database and in the reference evaluator.

Pages are keyset pages: the query asks for the rows strictly after the last
row of the previous page, whose sort values the page token carries.

A search ordered first by a metric, param or tag compiles to a chain of
statements, each run only while the page is still short
(``CompiledQuery.then``): the head (runs with a value for that key, an inner
join PostgreSQL reads in index order and stops at the page size), then the
runs with a NaN value (metrics), then the runs without the key (read in the
default order from an index of runs). One ordered first by a start or end
time, the default order included, is two: the runs with a time, then those
without, each read in order from an index of runs.
"""

from __future__ import annotations

import re
import uuid

from gateway.mlflow import numbers, searches
from gateway.mlflow.wire import DATASET_CONTEXT_TAG, RUN_NAME_TAG
from gateway.search import ast
from gateway.search import page_token as tokens
from gateway.search.ast import Aggregate, Comparison, Entity, OrderKey
from gateway.search.parser import parse_run_filter, parse_run_order_by
from gateway.search.statements import (
    LIFECYCLE_CONDITION,
    SQL_OPERATOR,
    Binder,
    CompiledQuery,
    SortKey,
    assemble,
    decode_keyset,
    next_page_token,
)


# Allowlists: attribute -> column.
_RUN_TEXT_COLUMNS = {
    "run_name": "r.name",
    "status": "r.status",
    "user_id": "r.user_id",
    "artifact_uri": "r.artifact_uri",
}
_RUN_NUMERIC_COLUMNS = {"start_time": "r.start_time", "end_time": "r.end_time"}
_METRIC_SUMMARY_COLUMN = {Aggregate.LATEST: "value", Aggregate.MIN: "min_value", Aggregate.MAX: "max_value"}
_KEYED_TABLE = {Entity.PARAM: "params", Entity.TAG: "run_tags"}
# How many leading characters of a param or tag value its search indexes hold:
# params and run_tags store them, collated "C", as value_prefix
# (sql/006_search_value_prefix.sql), and the number is part of its definition.
_INDEXED_PREFIX = 400
# How many leading characters of a run name its search index holds (sql/007).
_INDEXED_NAME_PREFIX = 200
_DATASET_COLUMNS = {"name": "d.name", "digest": "d.digest"}

_RUN_ID_HEX = re.compile(r"[0-9a-f]{32}")
_NAN = "'NaN'::double precision"


# ---------------------------------------------------------------------------
# Arguments


def _experiment_id_list(experiment_ids: list) -> list[int]:
    # An id beyond bigint cannot exist; leaving it out keeps it off the wire.
    return [value for value in map(numbers.experiment_id, experiment_ids or []) if numbers.in_int64(value)]


def _run_uuid(text: str) -> uuid.UUID | None:
    """The uuid of a run id as clients write it (32 lowercase hex), or None when it cannot be one."""
    return uuid.UUID(hex=text) if _RUN_ID_HEX.fullmatch(text) else None


# ---------------------------------------------------------------------------
# Run filters


def _metric_condition(clause: Comparison, bind: Binder) -> str:
    column = "s." + _METRIC_SUMMARY_COLUMN[clause.aggregate]
    value = bind(clause.value, "double precision")
    if clause.comparator == ast.NE:
        # MLflow: NaN differs from every number. PostgreSQL agrees (NaN <> x);
        # a NULL min/max (no non-NaN point) stands for NaN too.
        condition = f"({column} <> {value} OR {column} IS NULL)"
    else:
        # PostgreSQL sorts NaN above every number, MLflow never matches it here.
        condition = f"{column} {SQL_OPERATOR[clause.comparator]} {value} AND {column} <> {_NAN}"
    return (
        "EXISTS (SELECT 1 FROM metric_summaries s WHERE s.run_id = r.run_id "
        f"AND s.key = {bind(clause.key, 'text')} AND {condition})"
    )


def _keyed_row_conditions(clause: Comparison, alias: str, bind: Binder) -> list[str]:
    """The conditions on a params or run_tags row (``alias``) of an equality or comparison clause."""
    conditions = [f"{alias}.key = {bind(clause.key, 'text')}"]
    value = bind(clause.value, "text")
    if clause.comparator == ast.EQ:
        # The index holds a prefix of the value, in code-point order (equality
        # means the same in any deterministic collation). A value shorter than
        # the prefix equals a stored value exactly when it equals its prefix;
        # a longer one also compares the whole value.
        if len(clause.value) < _INDEXED_PREFIX:
            conditions.append(f"{alias}.value_prefix = {value}")
        else:
            conditions.append(f"{alias}.value_prefix = left({value}, {_INDEXED_PREFIX}) AND {alias}.value = {value}")
    elif clause.comparator in (ast.LIKE, ast.ILIKE) and _decided_by_prefix(clause.value):
        # The pattern only looks at the first characters of a value, all within
        # the stored prefix, so matching the prefix is matching the value: the
        # search index holds it, and a search reads no table row for it (and
        # LIKE 'abc%' on the "C"-collated prefix is a range of that index).
        # ILIKE lower-cases by the collation, so it reads the prefix in the
        # value's (the database's default) collation.
        if clause.comparator == ast.LIKE:
            conditions.append(f"{alias}.value_prefix LIKE {value}")
        else:
            conditions.append(f'{alias}.value_prefix COLLATE "default" ILIKE {value}')
    else:
        conditions.append(f"{alias}.value {SQL_OPERATOR[clause.comparator]} {value}")
    return conditions


def _decided_by_prefix(pattern: str) -> bool:
    """Whether a LIKE pattern matches a value exactly when it matches the value's indexed prefix.

    True for a pattern of fixed-width items (characters, ``_``, escaped
    characters) followed by ``%`` only, whose items fit in the prefix; also for
    one without ``%`` shorter than the prefix (a longer value cannot match it).
    """
    width = 0
    characters = iter(pattern)
    for character in characters:
        if character == "%":
            rest = "".join(characters)
            return rest.strip("%") == "" and width <= _INDEXED_PREFIX
        if character == "\\" and next(characters, None) is None:
            return False  # a lone backslash at the end: left to the database as it is
        width += 1
    return width < _INDEXED_PREFIX


def _keyed_condition(clause: Comparison, bind: Binder, experiment_ids: list[int]) -> str:
    if clause.entity is Entity.TAG and clause.key == RUN_NAME_TAG:
        if clause.comparator == ast.IS_NULL:
            return "FALSE"
        if clause.comparator == ast.IS_NOT_NULL:
            return "TRUE"
        return f"r.name {SQL_OPERATOR[clause.comparator]} {bind(clause.value, 'text')}"
    table = _KEYED_TABLE[clause.entity]
    # The row carries its run's experiment (sql/005), so the (experiment_id,
    # key, value) index finds the matching rows of the experiment alone.
    row_of_run = f"SELECT 1 FROM {table} k WHERE k.run_id = r.run_id AND k.experiment_id = r.experiment_id"
    if clause.comparator == ast.IS_NULL:
        # Runs without the key are found by a hash anti join against the key's
        # rows (an index-only scan): OFFSET 0 keeps that subquery whole, so the
        # join cannot probe it once per run. Probing every run of a large
        # experiment in order is what PostgreSQL picked otherwise, expecting
        # to stop at the page size, and it reads them all when few lack the key.
        experiments = _experiment_condition_sql(experiment_ids, bind, "h.experiment_id")
        return (
            f"NOT EXISTS (SELECT 1 FROM (SELECT h.run_id FROM {table} h WHERE {experiments} "
            f"AND h.key = {bind(clause.key, 'text')} OFFSET 0) k WHERE k.run_id = r.run_id)"
        )
    if clause.comparator == ast.IS_NOT_NULL:
        return f"EXISTS ({row_of_run} AND k.key = {bind(clause.key, 'text')})"
    return f"EXISTS ({row_of_run} AND {' AND '.join(_keyed_row_conditions(clause, 'k', bind))})"


def _experiment_condition_sql(ids: list[int], bind: Binder, column: str = "r.experiment_id") -> str:
    # One experiment (the common case) is an equality: PostgreSQL can then read
    # the page in order from an index led by experiment_id, which it cannot do
    # for = ANY(array).
    if len(set(ids)) == 1:
        return f"{column} = {bind(ids[0], 'bigint')}"
    return f"{column} = ANY({bind(ids, 'bigint[]')})"


def _run_id_condition(clause: Comparison, bind: Binder) -> str:
    comparator = clause.comparator
    if comparator in (ast.LIKE, ast.ILIKE):
        return f"replace(r.run_id::text, '-', '') {SQL_OPERATOR[comparator]} {bind(clause.value, 'text')}"
    if comparator in (ast.IN, ast.NOT_IN):
        # Text that is not a run id matches no run, so it is left out of the list.
        ids = [run_uuid for text in clause.value if (run_uuid := _run_uuid(text)) is not None]
        if comparator == ast.IN:
            return f"r.run_id = ANY({bind(ids, 'uuid[]')})" if ids else "FALSE"
        return f"r.run_id <> ALL({bind(ids, 'uuid[]')})" if ids else "TRUE"
    run_uuid = _run_uuid(clause.value)
    if run_uuid is None:
        return "FALSE" if comparator == ast.EQ else "TRUE"
    return f"r.run_id {SQL_OPERATOR[comparator]} {bind(run_uuid, 'uuid')}"


def _text_condition(column: str, clause: Comparison, bind: Binder) -> str:
    if clause.comparator == ast.IN:
        return f"{column} = ANY({bind(list(clause.value), 'text[]')})"
    if clause.comparator == ast.NOT_IN:
        return f"{column} <> ALL({bind(list(clause.value), 'text[]')})"
    return f"{column} {SQL_OPERATOR[clause.comparator]} {bind(clause.value, 'text')}"


def _attribute_condition(clause: Comparison, bind: Binder) -> str:
    if clause.key == "run_id":
        return _run_id_condition(clause, bind)
    if clause.key in _RUN_NUMERIC_COLUMNS:
        column = _RUN_NUMERIC_COLUMNS[clause.key]
        return f"{column} {SQL_OPERATOR[clause.comparator]} {bind.number(clause.value)}"
    return _text_condition(_RUN_TEXT_COLUMNS[clause.key], clause, bind)


def _dataset_condition(clause: Comparison, bind: Binder) -> str:
    if clause.key == "context":
        tag_value = "input_tag.tag ->> 'value'"
        # A tags value that is not an array yields no tags instead of failing the search.
        return (
            "EXISTS (SELECT 1 FROM run_dataset_inputs d CROSS JOIN LATERAL "
            "jsonb_array_elements(CASE WHEN jsonb_typeof(d.tags) = 'array' THEN d.tags END) AS input_tag(tag) "
            f"WHERE d.run_id = r.run_id AND input_tag.tag ->> 'key' = {bind(DATASET_CONTEXT_TAG, 'text')} "
            f"AND {_text_condition(tag_value, clause, bind)})"
        )
    return (
        "EXISTS (SELECT 1 FROM run_dataset_inputs d WHERE d.run_id = r.run_id "
        f"AND {_text_condition(_DATASET_COLUMNS[clause.key], clause, bind)})"
    )


def _run_condition(clause: Comparison, bind: Binder, experiment_ids: list[int]) -> str:
    if clause.entity is Entity.METRIC:
        return _metric_condition(clause, bind)
    if clause.entity in (Entity.PARAM, Entity.TAG):
        return _keyed_condition(clause, bind, experiment_ids)
    if clause.entity is Entity.ATTRIBUTE:
        return _attribute_condition(clause, bind)
    return _dataset_condition(clause, bind)


# ---------------------------------------------------------------------------
# Where a run search reads its runs from

# A run search reads its runs as ``r``: the runs table, or the rows of one param
# or tag key. A filter that asks for a param or tag by equality or by a LIKE
# prefix (the anchor, see below) matches at most one row of that key per run,
# and the row carries its run's id, experiment and start time (sql/005). When
# the search reads nothing else of a run, it starts from those rows, found by
# the (experiment, key, value) index, and reads runs only to skip deleted ones,
# from an index of those alone (sql/008); otherwise the anchor is an EXISTS
# like any clause.
_ANCHORED_COLUMNS = frozenset({"run_id", "experiment_id", "start_time"})
_RUN_COLUMN = re.compile(r"\br\.([a-z_]+)")
# MLflow's two lifecycle stages: a run is active unless it is deleted.
_NOT_DELETED = (
    "NOT EXISTS (SELECT 1 FROM runs d WHERE d.run_id = r.run_id AND d.lifecycle_stage <> 'active')"
)


# An equality anchors a search first: it reads its key's rows of one value,
# already in the default order. Without one, LIKE with a pattern that starts
# with a character and that the stored prefix decides ('abc%') reads its
# matches as a range of the key's search index, and sorts them: a page of a
# 100,000-run experiment took 1-4 ms instead of 39-63 ms (probing each run in
# order, or hashing every row of the key). Other comparisons stay an EXISTS:
# as anchors they read every row of their key (ILIKE 'abc%' too, which cannot
# be a range), and a 100-run page of ILIKE 'V2%' took 38 ms instead of 3 ms,
# of IS NOT NULL 17 ms instead of 1.5 ms (PostgreSQL probes runs in order and
# stops at the page size).
def _anchor_clause(clauses: list[Comparison], view_type: str) -> Comparison | None:
    """The filter clause a search may read its runs from (see above), if any.

    A search of deleted runs only reads runs, whose deleted ones are few.
    """
    if view_type == "DELETED_ONLY":
        return None
    keyed = [
        clause
        for clause in clauses
        # the run name lives on runs
        if clause.entity in _KEYED_TABLE and not (clause.entity is Entity.TAG and clause.key == RUN_NAME_TAG)
    ]
    for clause in keyed:
        if clause.comparator == ast.EQ:
            return clause
    for clause in keyed:
        if clause.comparator == ast.LIKE and clause.value[:1] not in ("", "%", "_") and _decided_by_prefix(
            clause.value
        ):
            return clause
    return None


def _reads_anchored_columns_only(joins: list[str], conditions: list[str], sort_keys: list[SortKey]) -> bool:
    """Whether the statement reads no column of a run but those an anchor row carries."""
    texts = [*joins, *conditions]
    for key in sort_keys:
        texts += [key.value_sql, key.rank_sql or "", key.indexed_prefix[0] if key.indexed_prefix else ""]
    return all(set(_RUN_COLUMN.findall(text)) <= _ANCHORED_COLUMNS for text in texts)


# ---------------------------------------------------------------------------
# Run ordering


def _clauses_requiring_leading_metric(order_keys: tuple[OrderKey, ...], clauses) -> list[Comparison]:
    """The filter clauses that make the first order key a number on every matching run.

    A clause on the same metric summary with any comparator but ``!=`` holds
    only for a run that has the key with a non-NaN value, so every run the
    search returns ranks 0 on that key and the head needs no other part (see
    :func:`compile_run_search`). Those clauses restrict the head's join
    instead of being an EXISTS each.
    """
    if not order_keys or order_keys[0].entity is not Entity.METRIC:
        return []
    leading = order_keys[0]
    return [
        clause
        for clause in clauses
        if clause.entity is Entity.METRIC
        and clause.key == leading.key
        and clause.aggregate is leading.aggregate
        and clause.comparator != ast.NE
    ]


def _leads_with_keyed_value(order_keys: tuple[OrderKey, ...]) -> bool:
    """Whether the first order key is a metric, param or tag (one a run may lack)."""
    if not order_keys:
        return False
    first = order_keys[0]
    if first.entity is Entity.METRIC or first.entity is Entity.PARAM:
        return True
    return first.entity is Entity.TAG and first.key != RUN_NAME_TAG


def _leads_with_time(order_keys: tuple[OrderKey, ...]) -> bool:
    """Whether the first sort key is a start or end time (the default order's is start_time)."""
    if not order_keys:
        return True
    first = order_keys[0]
    return first.entity is Entity.ATTRIBUTE and first.key in _RUN_NUMERIC_COLUMNS


# How the first order key is read when it is a metric, param, tag or time. Each
# part is one statement; they follow each other in this order (see compile_run_search).
_HEAD = "head"  # runs with a value (rank 0), which PostgreSQL can read in index order
_UNRANKED_HEAD = "unranked head"  # a head with no other part to follow, so no rank column at all
_LONG = "long"  # param/tag: runs with a value sorted by the whole value, while one is too long for the head
_NAN_VALUES = "nan"  # metric: runs whose value is NaN (rank 1)
# Runs without the key or time (param/tag/time rank 1, metric rank 2); those of a
# metric, param or tag key are read in the default order.
_MISSING = "missing"
_RANK_OF_MISSING = {Entity.METRIC: 2, Entity.PARAM: 1, Entity.TAG: 1}


def _orders_by_run_name(order_key: OrderKey) -> bool:
    if order_key.entity is Entity.TAG:
        return order_key.key == RUN_NAME_TAG
    return order_key.entity is Entity.ATTRIBUTE and order_key.key == "run_name"


def _run_sort_keys(
    order_keys: tuple[OrderKey, ...],
    bind: Binder,
    part: str,
    leading_clauses: list[Comparison],
    experiment_ids: list[int],
) -> tuple[list[SortKey], list[str], list[str]]:
    """The ORDER BY keys of a run search, the joins they read from and the conditions they add.

    ``part`` says how a first key on a metric, param or tag is read (see
    :func:`compile_run_search`); ``leading_clauses`` (see
    :func:`_clauses_requiring_leading_metric`) become conditions of the head's join.
    """
    sort_keys: list[SortKey] = []
    joins: list[str] = []
    conditions: list[str] = []
    start_time_column = "r.start_time"
    for index, order_key in enumerate(order_keys):
        output = f"sort_{index}"
        alias = f"o{index}"
        first_keyed = index == 0 and _leads_with_keyed_value(order_keys)
        head = first_keyed and part in (_HEAD, _UNRANKED_HEAD)
        head_rank = None if part == _UNRANKED_HEAD else "0"
        if first_keyed and part == _MISSING:
            # No row for the key: the rank and the (NULL) value are constants,
            # so the order is the default one, which an index of runs holds.
            table = "metric_summaries" if order_key.entity is Entity.METRIC else _KEYED_TABLE[order_key.entity]
            conditions.append(
                f"NOT EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.run_id = r.run_id "
                f"AND {alias}.key = {bind(order_key.key, 'text')})"
            )
            value_type = tokens.FLOAT if order_key.entity is Entity.METRIC else tokens.TEXT
            null = "NULL::double precision" if order_key.entity is Entity.METRIC else "NULL::text"
            rank = str(_RANK_OF_MISSING[order_key.entity])
            sort_keys.append(SortKey(null, value_type, order_key.ascending, output, rank))
        elif first_keyed and part == _NAN_VALUES:
            # A row whose summary is NaN: NaN itself, or no min/max (no non-NaN point).
            column = f"{alias}.{_METRIC_SUMMARY_COLUMN[order_key.aggregate]}"
            if order_key.aggregate is Aggregate.LATEST:
                nan = f"{column} = {_NAN}"
            else:
                nan = f"({column} IS NULL OR {column} = {_NAN})"
            joins.append(
                f"JOIN metric_summaries {alias} ON {alias}.run_id = r.run_id "
                f"AND {alias}.key = {bind(order_key.key, 'text')} AND {nan}"
            )
            sort_keys.append(SortKey("NULL::double precision", tokens.FLOAT, order_key.ascending, output, "1"))
        elif first_keyed and part == _LONG:
            # Some value of the key is longer than the indexed prefix: every run
            # with a value is sorted the exact way.
            key = bind(order_key.key, "text")
            joins.append(
                f"JOIN {_KEYED_TABLE[order_key.entity]} {alias} ON {alias}.run_id = r.run_id AND {alias}.key = {key}"
            )
            conditions.append(_long_values(order_key, key, experiment_ids, bind))
            sort_keys.append(SortKey(f'{alias}.value COLLATE "C"', tokens.TEXT, order_key.ascending, output, "0"))
        elif head and order_key.entity is Entity.METRIC:
            column = f"{alias}.{_METRIC_SUMMARY_COLUMN[order_key.aggregate]}"
            # PostgreSQL sorts NaN above every number: "< NaN" keeps the numbers
            # (no NULL either) and bounds the (key, value) index scan.
            join = [f"{alias}.key = {bind(order_key.key, 'text')}", f"{column} < {_NAN}"]
            for clause in leading_clauses:
                join.append(f"{column} {SQL_OPERATOR[clause.comparator]} {bind(clause.value, 'double precision')}")
            joins.append(f"JOIN metric_summaries {alias} ON {alias}.run_id = r.run_id AND " + " AND ".join(join))
            sort_keys.append(SortKey(column, tokens.FLOAT, order_key.ascending, output, head_rank))
        elif head:
            # The row carries its run's experiment and start time (sql/005), so
            # one index holds this key's whole order within the experiment. It
            # holds a prefix of each value, which sorts like the value while no
            # value is longer; otherwise the head is empty and the long part
            # sorts the runs with a value.
            key = bind(order_key.key, "text")
            joins.append(
                f"JOIN {_KEYED_TABLE[order_key.entity]} {alias} ON {alias}.run_id = r.run_id "
                f"AND {alias}.experiment_id = r.experiment_id AND {alias}.key = {key}"
            )
            conditions.append(f"NOT {_long_values(order_key, key, experiment_ids, bind)}")
            sort_keys.append(SortKey(f"{alias}.value_prefix", tokens.TEXT, order_key.ascending, output, head_rank))
            start_time_column = f"{alias}.start_time"
        elif order_key.entity is Entity.METRIC:
            joins.append(
                f"LEFT JOIN metric_summaries {alias} ON {alias}.run_id = r.run_id "
                f"AND {alias}.key = {bind(order_key.key, 'text')}"
            )
            number = f"NULLIF({alias}.{_METRIC_SUMMARY_COLUMN[order_key.aggregate]}, {_NAN})"
            rank = f"CASE WHEN {alias}.run_id IS NULL THEN 2 WHEN {number} IS NULL THEN 1 ELSE 0 END"
            sort_keys.append(SortKey(number, tokens.FLOAT, order_key.ascending, output, rank))
        elif _orders_by_run_name(order_key):
            prefix = ("r.name", _INDEXED_NAME_PREFIX) if index == 0 else None
            sort_keys.append(
                SortKey('r.name COLLATE "C"', tokens.TEXT, order_key.ascending, output, indexed_prefix=prefix)
            )
        elif order_key.entity in (Entity.PARAM, Entity.TAG):
            key = bind(order_key.key, "text")
            joins.append(
                f"LEFT JOIN {_KEYED_TABLE[order_key.entity]} {alias} ON {alias}.run_id = r.run_id "
                f"AND {alias}.key = {key}"
            )
            rank = f"CASE WHEN {alias}.run_id IS NULL THEN 1 ELSE 0 END"
            sort_keys.append(
                SortKey(f'{alias}.value COLLATE "C"', tokens.TEXT, order_key.ascending, output, rank)
            )
        elif order_key.key == "run_id":
            sort_keys.append(SortKey("r.run_id", tokens.UUID, order_key.ascending, "run_id"))
        elif order_key.key in _RUN_NUMERIC_COLUMNS:
            column = _RUN_NUMERIC_COLUMNS[order_key.key]
            first_part = part if index == 0 else None
            sort_keys.append(_time_sort_key(column, order_key.ascending, output, first_part, conditions))
        else:
            column = _RUN_TEXT_COLUMNS[order_key.key]
            sort_keys.append(SortKey(f'{column} COLLATE "C"', tokens.TEXT, order_key.ascending, output))
    if not any(k.entity is Entity.ATTRIBUTE and k.key == "start_time" for k in order_keys):
        first_part = part if not order_keys else None
        output = f"sort_{len(order_keys)}"
        sort_keys.append(_time_sort_key(start_time_column, False, output, first_part, conditions))
    sort_keys.append(SortKey("r.run_id", tokens.UUID, True, "run_id"))
    return sort_keys, joins, conditions


def _time_sort_key(column: str, ascending: bool, output: str, part: str | None, conditions: list[str]) -> SortKey:
    """A start or end time, missing times last in either direction.

    As the search's first key (``part`` is not None) the runs with a time (the
    head) and those without (the missing part) are statements of their own:
    each reads an index of runs in order, and the head can start from the page
    token's time instead of reading every run before it again.
    """
    rank = f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END"
    if part == _HEAD:
        conditions.append(f"{rank} = 0")
        return SortKey(column, tokens.BIGINT, ascending, output, "0")
    if part == _MISSING:
        # Every time here is NULL; ordering by it still matches the index's order.
        conditions.append(f"{rank} = 1")
        return SortKey(column, tokens.BIGINT, ascending, output, "1")
    return SortKey(column, tokens.BIGINT, ascending, output, rank)


def _long_values(order_key: OrderKey, key: str, experiment_ids: list[int], bind: Binder) -> str:
    """Whether a value of the key in the searched experiments is longer than the indexed prefix.

    Uncorrelated, so PostgreSQL answers it once per statement, from a partial index.
    """
    experiments = _experiment_condition_sql(experiment_ids, bind, "l.experiment_id")
    return (
        f"EXISTS (SELECT 1 FROM {_KEYED_TABLE[order_key.entity]} l WHERE {experiments} "
        f"AND l.key = {key} AND length(l.value) > {_INDEXED_PREFIX})"
    )


# ---------------------------------------------------------------------------
# Keyset pagination


# ---------------------------------------------------------------------------
# Public entry points


def compile_run_search(
    *,
    experiment_ids: list[int],
    filter_string: str | None,
    run_view_type: str,
    order_by: list[str] | None,
    max_results: int,
    page_token: str | None,
) -> CompiledQuery:
    """Compile a runs/search request.

    The statement selects ``run_id`` (uuid) first, then the sort columns, and
    asks for ``max_results + 1`` rows: the extra row tells whether another page
    follows (see :func:`next_run_page_token`).

    Args:
        experiment_ids: the experiments to search.
        filter_string: MLflow's filter syntax, plus MIN/MAX/LATEST(metrics.k); None for all runs.
        run_view_type: ACTIVE_ONLY, DELETED_ONLY or ALL (or their enum numbers 1-3).
        order_by: MLflow's order_by clauses, plus MIN/MAX(metrics.k); None for
            ``start_time DESC, run_id``.
        max_results: the page size, 1 to 50000.
        page_token: a token from :func:`next_run_page_token` for the same search, or None/"".

    Returns:
        The statement, its arguments and the names of its keyset columns.

    Raises:
        InvalidParameter: a bad filter, order_by, view type, page size or page token
            (MLflow's messages).
    """
    searches.page_size(max_results)
    view_type = searches.view_type(run_view_type, "run_view_type")
    ids = _experiment_id_list(experiment_ids)
    clauses = parse_run_filter(filter_string)
    order_keys = parse_run_order_by(order_by)
    search_fingerprint = tokens.fingerprint(
        search="runs",
        experiment_ids=sorted(set(ids)),
        filter=filter_string or "",
        view_type=view_type,
        order_by=list(order_by or []),
    )
    leading_clauses = _clauses_requiring_leading_metric(order_keys, clauses)
    other_clauses = [clause for clause in clauses if not any(clause is c for c in leading_clauses)]
    anchor = _anchor_clause(other_clauses, view_type)

    def part_query(part: str, keyset: list | None, then: CompiledQuery | None = None) -> CompiledQuery:
        bind = Binder()
        sort_keys, joins, order_conditions = _run_sort_keys(order_keys, bind, part, leading_clauses, ids)
        conditions = [
            _experiment_condition_sql(ids, bind),
            *order_conditions,
            *(_run_condition(clause, bind, ids) for clause in other_clauses if clause is not anchor),
        ]
        if anchor is not None and _reads_anchored_columns_only(joins, conditions, sort_keys):
            table = f"{_KEYED_TABLE[anchor.entity]} r"
            conditions += _keyed_row_conditions(anchor, "r", bind)
            if view_type == "ACTIVE_ONLY":
                conditions.append(_NOT_DELETED)
        else:
            table = "runs r"
            conditions.append(f"r.lifecycle_stage {LIFECYCLE_CONDITION[view_type]}")
            if anchor is not None:
                conditions.append(_run_condition(anchor, bind, ids))
        return assemble(
            id_column="r.run_id",
            table=table,
            joins=joins,
            conditions=conditions,
            sort_keys=sort_keys,
            keyset=keyset,
            search_fingerprint=search_fingerprint,
            max_results=max_results,
            bind=bind,
            then=then,
        )

    def decode(part: str) -> list | None:
        sort_keys, _joins, _conditions = _run_sort_keys(order_keys, Binder(), part, leading_clauses, ids)
        return decode_keyset(page_token, search_fingerprint, sort_keys)

    # Ordered by a key some runs may lack: in either direction the runs with a
    # value come first (the head, read in index order, or the long part when
    # the index cannot sort the values), then NaN (metrics), then the runs
    # without the key. Each part is its own statement, run only while the page
    # is short; a page token's rank says where the previous page stopped.
    if _leads_with_keyed_value(order_keys) and not leading_clauses:
        first = order_keys[0].entity
        middle = (_NAN_VALUES, 1) if first is Entity.METRIC else (_LONG, 0)
        parts = [(_HEAD, 0), middle, (_MISSING, _RANK_OF_MISSING[first])]
    elif _leads_with_time(order_keys):
        parts = [(_HEAD, 0), (_MISSING, 1)]
    else:
        return part_query(_UNRANKED_HEAD, decode(_UNRANKED_HEAD))
    keyset = decode(_HEAD)
    cursor_rank = 0 if keyset is None else keyset[0]
    query = None
    for part, rank in reversed(parts):
        if rank >= cursor_rank:
            query = part_query(part, keyset, then=query)
    return query


def compile_run_filter(
    *,
    experiment_ids: list[int],
    filter_string: str | None,
    run_view_type: str,
) -> CompiledQuery:
    """Compile the set of runs a runs/search would return, unordered and unpaged.

    The statement is ``SELECT r.run_id FROM runs r WHERE ...``; use it as a
    subquery (e.g. to list the param keys of the matching runs).

    Args:
        experiment_ids: the experiments to search.
        filter_string: as for :func:`compile_run_search`.
        run_view_type: ACTIVE_ONLY, DELETED_ONLY or ALL (or their enum numbers 1-3).

    Returns:
        The statement and its arguments (no sort columns).

    Raises:
        InvalidParameter: a bad filter or view type (MLflow's messages).
    """
    view_type = searches.view_type(run_view_type, "run_view_type")
    ids = _experiment_id_list(experiment_ids)
    clauses = parse_run_filter(filter_string)
    bind = Binder()
    conditions = [_experiment_condition_sql(ids, bind), f"r.lifecycle_stage {LIFECYCLE_CONDITION[view_type]}"]
    conditions.extend(_run_condition(clause, bind, ids) for clause in clauses)
    sql = "SELECT r.run_id\nFROM runs r\nWHERE " + "\n  AND ".join(conditions)
    return CompiledQuery(sql=sql, args=bind.args, sort_columns=[])


def next_run_page_token(query: CompiledQuery, rows: list, max_results: int) -> str | None:
    """The token for the page after ``rows[:max_results]``.

    Args:
        query: what :func:`compile_run_search` returned for this page.
        rows: the rows the query returned (asyncpg Records or mappings), up to ``max_results + 1``.
        max_results: the page size the query was compiled with.

    Returns:
        None when this is the last page (``len(rows) <= max_results``), else a token.
    """
    return next_page_token(query, rows, max_results)







