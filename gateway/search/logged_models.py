"""logged-models/search: MLflow's filter grammar for logged models compiled to parameterised SQL.

Pure: no I/O. Clauses name attributes (name, model_id, model_type, status,
source_run_id, creation_timestamp, last_updated_timestamp), ``params.k``,
``tags.k`` or ``metrics.k``. As in MLflow, a metric clause matches a model with
any point of that key (logged with the model's id) satisfying it, and the
``datasets`` of a search narrow those points to the ones logged on the given
datasets; with no metric clause, ``datasets`` keeps the models with any metric
on them. Ordering by ``metrics.k`` uses the model's latest point of the key
(greatest timestamp, then step), optionally on one dataset. Pages are offsets
in a token that also pins the query it belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidParameter
from gateway.mlflow.page_tokens import offset_token, read_offset_token
from gateway.search import ast
from gateway.search.ast import Comparison, Entity
from gateway.search.parser import invalid_comparator, parse_filter
from gateway.search.scanner import Grammar

DEFAULT_MAX_RESULTS = 100

_NUMERIC_ATTRIBUTES = {
    "creation_timestamp": "creation_timestamp_ms",
    "creation_time": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
    "last_updated_time": "last_updated_timestamp_ms",
}
_STRING_ATTRIBUTES = {
    "name": "name",
    "model_id": "model_id",
    "model_type": "model_type",
    "status": "status",
    "source_run_id": "source_run_id",
}
_COLUMNS = {**_NUMERIC_ATTRIBUTES, **_STRING_ATTRIBUTES}
_ENTITY_BY_NAME = {
    "metric": Entity.METRIC,
    "metrics": Entity.METRIC,
    "param": Entity.PARAM,
    "params": Entity.PARAM,
    "parameter": Entity.PARAM,
    "parameters": Entity.PARAM,
    "tag": Entity.TAG,
    "tags": Entity.TAG,
    "attribute": Entity.ATTRIBUTE,
    "attributes": Entity.ATTRIBUTE,
    "attr": Entity.ATTRIBUTE,
}
_NUMERIC_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
_STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE")
_ATTRIBUTE_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_SQL_OPERATOR = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "LIKE": "LIKE", "ILIKE": "ILIKE"}


def _resolve_entity(text: str) -> Entity:
    name = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "`" else text
    entity = _ENTITY_BY_NAME.get(name)
    if entity is None:
        raise InvalidParameter(
            f"Invalid entity type '{name}'. Valid values are ['metric', 'parameter', 'tag', 'attribute']"
        )
    return entity


_GRAMMAR = Grammar(
    resolve_entity=_resolve_entity,
    search_attributes=frozenset(_COLUMNS),
    order_by_attributes=frozenset(_COLUMNS),
    numeric_attributes=frozenset(_NUMERIC_ATTRIBUTES),
    list_attributes=tuple(_STRING_ATTRIBUTES),
    allows_aggregates=False,
    quotes_invalid_clause=True,
)


def parse_logged_model_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse a logged-models/search filter; MLflow's message for the first problem found."""
    clauses = parse_filter(filter_string, _GRAMMAR)
    for clause in clauses:
        if clause.entity is Entity.METRIC or (
            clause.entity is Entity.ATTRIBUTE and clause.key in _NUMERIC_ATTRIBUTES
        ):
            allowed = _NUMERIC_COMPARATORS
        elif clause.entity is Entity.ATTRIBUTE:
            allowed = _ATTRIBUTE_COMPARATORS
        else:
            allowed = _STRING_COMPARATORS
        if clause.comparator not in allowed:
            raise invalid_comparator(clause.comparator, allowed, closing_quote=False)
    return tuple(clauses)


@dataclass(frozen=True)
class LoggedModelOrder:
    """One order_by entry of logged-models/search: an attribute or ``metrics.<key>``.

    ``dataset_name`` and ``dataset_digest`` (metrics only) rank by the latest point
    logged on that dataset.
    """

    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(frozen=True)
class DatasetFilter:
    """One entry of a search's ``datasets``: metric points logged on this dataset.

    A filter without a digest takes every digest of the name.
    """

    dataset_name: str
    dataset_digest: str | None = None


@dataclass(frozen=True)
class LoggedModelQuery:
    sql: str
    args: list[Any]
    offset: int
    fingerprint: str


def _fingerprint(
    experiment_ids: list[int],
    filter_string: str | None,
    order_by: list[LoggedModelOrder],
    datasets: list[DatasetFilter],
) -> str:
    return json.dumps(
        [
            experiment_ids,
            filter_string or "",
            [(o.field_name, o.ascending, o.dataset_name, o.dataset_digest) for o in order_by],
            [(d.dataset_name, d.dataset_digest) for d in datasets],
        ],
        separators=(",", ":"),
    )


def next_page_token(query: LoggedModelQuery, row_count: int, max_results: int) -> str | None:
    """The token of the page after this one, or None when this page is the last."""
    if row_count <= max_results:
        return None
    return offset_token(query.offset + max_results, query=query.fingerprint)


def compile_logged_model_search(
    *,
    experiment_ids: list[int],
    filter_string: str | None,
    order_by: list[LoggedModelOrder],
    max_results: int,
    page_token: str | None,
    datasets: list[DatasetFilter] | None = None,
) -> LoggedModelQuery:
    """The statement selecting one page of model ids (one row more than ``max_results``).

    Raises:
        InvalidParameter: a bad filter, order_by field or page token (MLflow's messages).
    """
    datasets = datasets or []
    fingerprint = _fingerprint(experiment_ids, filter_string, order_by, datasets)
    offset = 0
    if page_token:
        token = read_offset_token(page_token)
        if token.get("query") != fingerprint:
            raise InvalidParameter(
                "The page token does not belong to this search: experiment_ids, filter and order_by "
                "must be the same as on the first page."
            )
        offset = token["offset"]
    args: list[Any] = [experiment_ids]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    on_datasets = _on_datasets(datasets, param)
    where = ["lm.experiment_id = ANY($1::bigint[])", "lm.lifecycle_stage = 'active'"]
    clauses = parse_logged_model_filter(filter_string)
    for clause in clauses:
        where.append(_condition(clause, param, on_datasets))
    if on_datasets and not any(clause.entity is Entity.METRIC for clause in clauses):
        where.append(f"lm.model_id IN (SELECT m.model_id FROM metric_points m WHERE {on_datasets})")
    order_sql = []
    joins = []
    for order in order_by:
        direction = "ASC" if order.ascending else "DESC"
        if order.field_name.startswith("metrics."):
            latest = f"latest_{len(joins) + 1}"
            joins.append(f"LEFT JOIN {_latest_metric(order, param)} AS {latest} ON {latest}.model_id = lm.model_id")
            expression = f"{latest}.value"
        elif order.field_name in _COLUMNS:
            expression = f"lm.{_COLUMNS[order.field_name]}"
        elif "." in order.field_name:
            raise InvalidParameter(
                f"Invalid order by field name: {order.field_name}. Only metrics are supported."
            )
        else:
            raise InvalidParameter(f"Invalid order by field name: {order.field_name}")
        order_sql.append(f"{expression} {direction} NULLS LAST")
    order_sql += ["lm.creation_timestamp_ms DESC", "lm.model_id"]
    sql = (
        f"SELECT lm.model_id FROM logged_models lm {' '.join(joins)} WHERE {' AND '.join(where)} "
        f"ORDER BY {', '.join(order_sql)} OFFSET {param(offset)} LIMIT {param(max_results + 1)}"
    )
    return LoggedModelQuery(sql, args, offset, fingerprint)


def _on_datasets(datasets: list[DatasetFilter], param) -> str | None:
    """A condition on metric rows ``m``: logged on any of ``datasets`` (None when there are none)."""
    alternatives = []
    for dataset in datasets:
        condition = f"m.dataset_name = {param(dataset.dataset_name)}"
        if dataset.dataset_digest:
            condition += f" AND m.dataset_digest = {param(dataset.dataset_digest)}"
        alternatives.append(f"({condition})")
    return f"({' OR '.join(alternatives)})" if alternatives else None


def _latest_metric(order: LoggedModelOrder, param) -> str:
    """Each model's latest point of a metric (model_id, value), as order_by ranks it: a subquery
    to join, not one correlated to each model, which Citus does not run beside a reference table."""
    conditions = ["m.model_id IS NOT NULL", f"m.key = {param(order.field_name[len('metrics.') :])}"]
    if order.dataset_name:
        conditions.append(f"m.dataset_name = {param(order.dataset_name)}")
    if order.dataset_digest:
        conditions.append(f"m.dataset_digest = {param(order.dataset_digest)}")
    return (
        f"(SELECT DISTINCT ON (m.model_id) m.model_id, m.value FROM metric_points m WHERE {' AND '.join(conditions)} "
        "ORDER BY m.model_id, m.timestamp DESC, m.step DESC, m.run_id)"
    )


def _condition(clause: Comparison, param, on_datasets: str | None) -> str:
    if clause.entity is Entity.METRIC:
        # Any point of the key matches, not only the latest one, as in MLflow. The points are
        # chosen apart from the models (an uncorrelated IN, not EXISTS): points live in shards by
        # run, models beside every shard, and Citus joins the two by model only that way.
        conditions = [
            f"m.key = {param(clause.key)}",
            f"m.value {_SQL_OPERATOR[clause.comparator]} {param(clause.value)}",
        ]
        if on_datasets:
            conditions.append(on_datasets)
        return f"lm.model_id IN (SELECT m.model_id FROM metric_points m WHERE {' AND '.join(conditions)})"
    if clause.entity in (Entity.PARAM, Entity.TAG):
        table = "logged_model_params" if clause.entity is Entity.PARAM else "logged_model_tags"
        return (
            f"EXISTS (SELECT 1 FROM {table} t WHERE t.model_id = lm.model_id AND t.key = {param(clause.key)} "
            f"AND t.value {_SQL_OPERATOR[clause.comparator]} {param(clause.value)})"
        )
    column = f"lm.{_COLUMNS[clause.key]}"
    value = clause.value
    if clause.key == "status":
        value = _status_name(value)
    if clause.comparator in (ast.IN, ast.NOT_IN):
        items = [_status_name(v) for v in value] if clause.key == "status" else list(value)
        negate = "NOT " if clause.comparator == ast.NOT_IN else ""
        return f"{negate}({column} = ANY({param(items)}::text[]))"
    if clause.key in _NUMERIC_ATTRIBUTES:
        return f"{column} {_SQL_OPERATOR[clause.comparator]} {param(int(value))}"
    return f"{column} {_SQL_OPERATOR[clause.comparator]} {param(value)}"


def _status_name(value: Any) -> Any:
    # Filters may use the wire names (LOGGED_MODEL_READY) or the short ones (READY).
    if isinstance(value, str):
        return {"LOGGED_MODEL_UPLOAD_FAILED": "FAILED"}.get(value, value.removeprefix("LOGGED_MODEL_"))
    return value
