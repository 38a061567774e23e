"""experiments/search compiled to one parameterised statement, paged by keyset."""

from __future__ import annotations

from gateway.mlflow import numbers, searches
from gateway.search import ast
from gateway.search import page_token as tokens
from gateway.search.ast import Comparison, Entity, OrderKey
from gateway.search.parser import parse_experiment_filter, parse_experiment_order_by
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

_EXPERIMENT_COLUMNS = {
    "name": ("e.name", tokens.TEXT),
    "experiment_id": ("e.experiment_id", tokens.BIGINT),
    "creation_time": ("e.creation_time", tokens.BIGINT),
    "last_update_time": ("e.last_update_time", tokens.BIGINT),
}


def _experiment_condition(clause: Comparison, bind: Binder) -> str:
    if clause.entity is Entity.TAG:
        row_of_key = (
            "SELECT 1 FROM experiment_tags k WHERE k.experiment_id = e.experiment_id "
            f"AND k.key = {bind(clause.key, 'text')}"
        )
        if clause.comparator == ast.IS_NULL:
            return f"NOT EXISTS ({row_of_key})"
        if clause.comparator == ast.IS_NOT_NULL:
            return f"EXISTS ({row_of_key})"
        return (
            f"EXISTS ({row_of_key} AND k.value {SQL_OPERATOR[clause.comparator]} "
            f"{bind(clause.value, 'text')})"
        )
    column = _EXPERIMENT_COLUMNS[clause.key][0]
    if clause.key == "experiment_id":
        # Ids beyond bigint cannot exist: they match nothing and stay off the wire.
        if clause.comparator in (ast.IN, ast.NOT_IN):
            ids = [value for value in clause.value if numbers.in_int64(value)]
            if clause.comparator == ast.IN:
                return f"{column} = ANY({bind(ids, 'bigint[]')})" if ids else "FALSE"
            return f"{column} <> ALL({bind(ids, 'bigint[]')})" if ids else "TRUE"
        if not numbers.in_int64(clause.value):
            return "FALSE" if clause.comparator == ast.EQ else "TRUE"
        return f"{column} {SQL_OPERATOR[clause.comparator]} {bind(clause.value, 'bigint')}"
    if clause.key == "name":
        return f"{column} {SQL_OPERATOR[clause.comparator]} {bind(clause.value, 'text')}"
    return f"{column} {SQL_OPERATOR[clause.comparator]} {bind.number(clause.value)}"


def compile_experiment_search(
    *,
    filter_string: str | None,
    view_type: str,
    order_by: list[str] | None,
    max_results: int,
    page_token: str | None,
) -> CompiledQuery:
    """Compile an experiments/search request.

    The statement selects ``experiment_id`` first, then the sort columns, and
    asks for ``max_results + 1`` rows. MLflow's default order is
    ``creation_time DESC, experiment_id``; an explicit order_by without
    experiment_id gets ``experiment_id DESC`` as the tiebreak (as in MLflow).

    Args:
        filter_string: MLflow's experiment filter syntax; None for all experiments.
        view_type: ACTIVE_ONLY, DELETED_ONLY or ALL (or their enum numbers 1-3).
        order_by: clauses on name, experiment_id, creation_time, last_update_time.
        max_results: the page size, 1 to 50000.
        page_token: a token from :func:`next_experiment_page_token` for the same search, or None/"".

    Returns:
        The statement, its arguments and the names of its keyset columns.

    Raises:
        InvalidParameter: a bad filter, order_by, view type, page size or page token
            (MLflow's messages).
    """
    searches.page_size(max_results)
    canonical_view_type = searches.view_type(view_type, "view_type")
    clauses = parse_experiment_filter(filter_string)
    order_keys = parse_experiment_order_by(order_by)
    if not order_keys:
        order_keys = (
            OrderKey(Entity.ATTRIBUTE, "creation_time", ascending=False),
            OrderKey(Entity.ATTRIBUTE, "experiment_id", ascending=True),
        )
    elif not any(key.key == "experiment_id" for key in order_keys):
        order_keys = (*order_keys, OrderKey(Entity.ATTRIBUTE, "experiment_id", ascending=False))
    search_fingerprint = tokens.fingerprint(
        search="experiments",
        filter=filter_string or "",
        view_type=canonical_view_type,
        order_by=list(order_by or []),
    )
    bind = Binder()
    conditions = [f"e.lifecycle_stage {LIFECYCLE_CONDITION[canonical_view_type]}"]
    conditions.extend(_experiment_condition(clause, bind) for clause in clauses)
    sort_keys = []
    for index, order_key in enumerate(order_keys):
        column, sql_type = _EXPERIMENT_COLUMNS[order_key.key]
        if order_key.key == "experiment_id":
            sort_keys.append(SortKey(column, sql_type, order_key.ascending, "experiment_id"))
        elif sql_type == tokens.TEXT:
            sort_keys.append(SortKey(f'{column} COLLATE "C"', sql_type, order_key.ascending, f"sort_{index}"))
        else:
            sort_keys.append(SortKey(column, sql_type, order_key.ascending, f"sort_{index}"))
    return assemble(
        id_column="e.experiment_id",
        table="experiments e",
        joins=[],
        conditions=conditions,
        sort_keys=sort_keys,
        keyset=decode_keyset(page_token, search_fingerprint, sort_keys),
        search_fingerprint=search_fingerprint,
        max_results=max_results,
        bind=bind,
    )


def next_experiment_page_token(query: CompiledQuery, rows: list, max_results: int) -> str | None:
    """The token for the page after ``rows[:max_results]``.

    Args:
        query: what :func:`compile_experiment_search` returned for this page.
        rows: the rows the query returned, up to ``max_results + 1``.
        max_results: the page size the query was compiled with.

    Returns:
        None when this is the last page (``len(rows) <= max_results``), else a token.
    """
    return next_page_token(query, rows, max_results)
