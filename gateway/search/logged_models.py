"""logged-models/search: MLflow's filter grammar for logged models compiled to parameterised SQL.

Pure: no I/O. Clauses name attributes (name, model_id, model_type, status,
source_run_id, creation_timestamp, last_updated_timestamp), ``params.k``,
``tags.k`` or ``metrics.k`` (the latest point logged with the model's id).
Pages are offsets in a token that also pins the query it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidParameter
from gateway.search import ast
from gateway.search.ast import Comparison, Entity
from gateway.search.parser import _Grammar, _invalid_comparator, _parse_filter

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
_LATEST_METRIC = (
    "(SELECT m.value FROM metrics m WHERE m.model_id = lm.model_id AND m.key = ${key} "
    "ORDER BY m.step DESC, m.timestamp DESC, m.value DESC LIMIT 1)"
)


def _resolve_entity(text: str) -> Entity:
    name = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "`" else text
    entity = _ENTITY_BY_NAME.get(name)
    if entity is None:
        raise InvalidParameter(
            f"Invalid entity type '{name}'. Valid values are ['metric', 'parameter', 'tag', 'attribute']"
        )
    return entity


_GRAMMAR = _Grammar(
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
    clauses = _parse_filter(filter_string, _GRAMMAR)
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
            raise _invalid_comparator(clause.comparator, allowed, closing_quote=False)
    return tuple(clauses)


@dataclass(frozen=True)
class LoggedModelOrder:
    """One order_by entry of logged-models/search: an attribute or ``metrics.<key>``."""

    field_name: str
    ascending: bool = True


@dataclass(frozen=True)
class LoggedModelQuery:
    sql: str
    args: list[Any]
    offset: int
    fingerprint: str


def _fingerprint(experiment_ids: list[int], filter_string: str | None, order_by: list[LoggedModelOrder]) -> str:
    return json.dumps(
        [experiment_ids, filter_string or "", [(o.field_name, o.ascending) for o in order_by]], separators=(",", ":")
    )


def _decode_token(token: str) -> dict:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidParameter(f"Invalid page token: {token!r}") from None
    if not isinstance(value, dict) or not isinstance(value.get("offset"), int) or value["offset"] < 0:
        raise InvalidParameter(f"Invalid page token: {token!r}")
    return value


def next_page_token(query: LoggedModelQuery, row_count: int, max_results: int) -> str | None:
    """The token of the page after this one, or None when this page is the last."""
    if row_count <= max_results:
        return None
    payload = {"offset": query.offset + max_results, "query": query.fingerprint}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def compile_logged_model_search(
    *,
    experiment_ids: list[int],
    filter_string: str | None,
    order_by: list[LoggedModelOrder],
    max_results: int,
    page_token: str | None,
) -> LoggedModelQuery:
    """The statement selecting one page of model ids (one row more than ``max_results``).

    Raises:
        InvalidParameter: a bad filter, order_by field or page token (MLflow's messages).
    """
    fingerprint = _fingerprint(experiment_ids, filter_string, order_by)
    offset = 0
    if page_token:
        token = _decode_token(page_token)
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

    where = ["lm.experiment_id = ANY($1::bigint[])", "lm.lifecycle_stage = 'active'"]
    for clause in parse_logged_model_filter(filter_string):
        where.append(_condition(clause, param))
    order_sql = []
    for order in order_by:
        direction = "ASC" if order.ascending else "DESC"
        if order.field_name.startswith("metrics."):
            key = order.field_name[len("metrics.") :]
            expression = _LATEST_METRIC.format(key=param(key)[1:])
        elif order.field_name in _COLUMNS:
            expression = f"lm.{_COLUMNS[order.field_name]}"
        else:
            raise InvalidParameter(f"Invalid order by field name: {order.field_name}")
        order_sql.append(f"{expression} {direction} NULLS LAST")
    order_sql += ["lm.creation_timestamp_ms DESC", "lm.model_id"]
    sql = (
        f"SELECT lm.model_id FROM logged_models lm WHERE {' AND '.join(where)} "
        f"ORDER BY {', '.join(order_sql)} OFFSET {param(offset)} LIMIT {param(max_results + 1)}"
    )
    return LoggedModelQuery(sql, args, offset, fingerprint)


def _condition(clause: Comparison, param) -> str:
    if clause.entity is Entity.METRIC:
        key = param(clause.key)
        return f"{_LATEST_METRIC.format(key=key[1:])} {_SQL_OPERATOR[clause.comparator]} {param(clause.value)}"
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
