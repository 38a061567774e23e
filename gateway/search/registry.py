"""registered-models/search and model-versions/search: MLflow's registry filters compiled to SQL.

Pure: no I/O. The grammar is MLflow's ``SearchModelUtils`` and
``SearchModelVersionUtils`` with its checks in the same order and wording:

- registered models: ``name`` (``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IN``,
  ``NOT IN``) and ``tags.<key>`` (``=``, ``!=``, ``LIKE``, ``ILIKE``); order by
  ``name``, ``timestamp`` or ``last_updated_timestamp`` (both the last update),
  then by name;
- model versions: ``name`` and ``run_id`` (as above), ``source_path`` (no
  lists), ``version_number`` (numeric comparators, an integer or a quoted
  integer) and ``tags.<key>``; order by ``name``, ``version_number``,
  ``creation_timestamp`` or ``last_updated_timestamp``, by default
  ``last_updated_timestamp DESC, name ASC, version_number DESC``.

Prompts live in the registry as models tagged ``mlflow.prompt.is_prompt =
'true'``; as in MLflow, a search leaves them out unless its filter asks for
prompts with that tag. Pages are offsets in MLflow's own token format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidParameter
from gateway.mlflow import numbers
from gateway.mlflow.page_tokens import offset_token, start_offset
from gateway.mlflow.wire import PROMPT_TAG
from gateway.search import ast
from gateway.search.ast import Comparison, Entity
from gateway.search.scanner import (
    Grammar,
    RawClause,
    check_characters,
    complete_like_escape,
    list_value,
    scan_filter,
    scan_order_by,
    set_text,
    unquote,
)

REGISTERED_MODELS_DEFAULT_MAX_RESULTS = 100
REGISTERED_MODELS_MAX_RESULTS = 1000
# MLflow's request default for model-versions/search is its upper bound too.
MODEL_VERSIONS_DEFAULT_MAX_RESULTS = 200_000
MODEL_VERSIONS_MAX_RESULTS = 200_000

_STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_TAG_COMPARATORS = ("=", "!=", "LIKE", "ILIKE")
_NUMERIC_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
_SQL_OPERATOR = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "LIKE": "LIKE", "ILIKE": "ILIKE"}

MODEL_SEARCH_ATTRIBUTES = frozenset({"name"})
MODEL_ORDER_BY_KEYS = ("name", "timestamp", "last_updated_timestamp")
# MLflow names only these two in its message for an unknown key.
_MODEL_RECOMMENDED_ORDER_BY_KEYS = ("name", "timestamp")
VERSION_SEARCH_ATTRIBUTES = frozenset({"name", "version_number", "run_id", "source_path"})
VERSION_NUMERIC_ATTRIBUTES = ("version_number", "creation_timestamp", "last_updated_timestamp")
VERSION_ORDER_BY_KEYS = frozenset({"name", "version_number", "creation_timestamp", "last_updated_timestamp"})
VERSION_DEFAULT_ORDER = ("last_updated_timestamp DESC", "name ASC", "version_number DESC")

# Allowlists: what a key may name -> its column.
_MODEL_ORDER_COLUMN = {
    "name": "rm.name",
    "timestamp": "rm.last_updated_time",
    "last_updated_timestamp": "rm.last_updated_time",
}
_VERSION_COLUMN = {
    "name": "rm.name",
    "run_id": "mv.source_run_id",
    "source_path": "mv.source",
    "version_number": "mv.version",
    "creation_timestamp": "mv.creation_time",
    "last_updated_timestamp": "mv.last_updated_time",
}
_TAG_TABLE = {
    "model": ("registered_model_tags", "t.model_key = rm.model_key"),
    "version": ("model_version_tags", "t.model_key = mv.model_key AND t.version = mv.version"),
}


def _resolve_entity(text: str) -> Entity:
    if text == "attribute":
        return Entity.ATTRIBUTE
    if text in ("tag", "tags"):
        return Entity.TAG
    raise InvalidParameter(f"Invalid entity type '{text}'. Valid entity types are ('attribute', 'tag', 'tags')")


_MODEL_GRAMMAR = Grammar(
    resolve_entity=_resolve_entity,
    search_attributes=MODEL_SEARCH_ATTRIBUTES,
    order_by_attributes=frozenset(MODEL_ORDER_BY_KEYS),
    numeric_attributes=frozenset(),
    list_attributes=("name",),
    allows_aggregates=False,
    quotes_invalid_clause=False,
)
_VERSION_GRAMMAR = Grammar(
    resolve_entity=_resolve_entity,
    search_attributes=VERSION_SEARCH_ATTRIBUTES,
    order_by_attributes=VERSION_ORDER_BY_KEYS,
    numeric_attributes=frozenset(VERSION_NUMERIC_ATTRIBUTES),
    list_attributes=("name", "run_id"),
    allows_aggregates=False,
    quotes_invalid_clause=False,
)


# ---- filters --------------------------------------------------------------------------


def _raw_key(raw: RawClause) -> str:
    """The key as written: MLflow checks an attribute's name before it strips quotes."""
    identifier = raw.operand.identifier
    if identifier.entity_text is None:
        return identifier.text
    return identifier.text[len(identifier.entity_text) + 1 :]


def _not_quoted(text: str) -> InvalidParameter:
    return InvalidParameter(
        "Parameter value is either not quoted or unidentified quote types used for string value "
        f"{text}. Use either single or double quotes."
    )


def _list_items(raw: RawClause, grammar: Grammar, key: str) -> tuple[str, ...]:
    if key not in grammar.list_attributes:
        raise InvalidParameter(
            f"Only {sorted(grammar.list_attributes)} attributes support comparison with a list of quoted string values."
        )
    return list_value(raw.literal)


def _value(raw: RawClause, entity: Entity, key: str, grammar: Grammar) -> ast.Value:
    """A clause's value, checked as MLflow's ``_get_value`` of the registry searches checks it."""
    literal = raw.literal
    if literal is None:  # IS [NOT] NULL: refused by the comparator check
        return None
    if entity is Entity.TAG:
        if literal.kind == "string":
            return literal.value
        if literal.kind == "word":
            raise _not_quoted(literal.text)
        raise InvalidParameter(
            f"Expected a quoted string value for tag (e.g. 'my-value'). Got value {literal.text}"
        )
    if literal.kind == "string":
        return literal.value
    if literal.kind == "word":
        raise _not_quoted(literal.text)
    if literal.kind == "list":
        return _list_items(raw, grammar, key)
    if grammar is _VERSION_GRAMMAR:
        if key not in grammar.numeric_attributes:
            raise InvalidParameter(
                f"Only the '{set_text(VERSION_NUMERIC_ATTRIBUTES)}' attributes support comparison with numeric values."
            )
        return literal.value
    raise InvalidParameter(
        f"Expected a quoted string value or a list of quoted string values for attributes. Got value {literal.text}"
    )


def _clauses(filter_string: str | None, grammar: Grammar) -> list[Comparison]:
    """Parse every clause (shape, keys, values) before any comparator is checked, as MLflow does."""
    if not filter_string:
        return []
    check_characters(filter_string, "filter")
    if not filter_string.strip():
        raise InvalidParameter(f"Invalid filter '{filter_string}'. Could not be parsed.")
    clauses = []
    for raw in scan_filter(filter_string, grammar):
        identifier = raw.operand.identifier
        entity = Entity.ATTRIBUTE if identifier.entity_text is None else grammar.resolve_entity(identifier.entity_text)
        if entity is Entity.ATTRIBUTE and _raw_key(raw) not in grammar.search_attributes:
            valid = set_text(sorted(grammar.search_attributes))
            raise InvalidParameter(f"Invalid attribute key '{_raw_key(raw)}' specified. Valid keys are '{valid}'")
        key = identifier.key
        value = _value(raw, entity, key, grammar)
        clauses.append(Comparison(entity, key, raw.comparator, value, None, raw.position))
    return clauses


def _check_list_comparator(clause: Comparison) -> None:
    if isinstance(clause.value, tuple) and clause.comparator not in (ast.IN, ast.NOT_IN):
        raise InvalidParameter(
            f"Invalid comparison clause. The comparator '{clause.comparator}' takes a single quoted string, "
            f"not a list (at position {clause.position})"
        )


def _check_tag(clause: Comparison) -> Comparison:
    if clause.comparator not in _TAG_COMPARATORS:
        raise InvalidParameter(f"Invalid comparator for tag: {clause.comparator}")
    return _like_ready(clause)


def _like_ready(clause: Comparison) -> Comparison:
    if clause.comparator in (ast.LIKE, ast.ILIKE) and isinstance(clause.value, str):
        return Comparison(clause.entity, clause.key, clause.comparator, complete_like_escape(clause.value),
                          None, clause.position)
    return clause


def parse_registered_model_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse a registered-models/search filter.

    Raises:
        InvalidParameter: MLflow's message for the first problem found.
    """
    checked = []
    for clause in _clauses(filter_string, _MODEL_GRAMMAR):
        if clause.entity is Entity.TAG:
            checked.append(_check_tag(clause))
            continue
        if clause.comparator not in _STRING_COMPARATORS:
            raise InvalidParameter(f"Invalid comparator for attribute: {clause.comparator}")
        _check_list_comparator(clause)
        checked.append(_like_ready(clause))
    return tuple(checked)


def _version_number(key: str, value: Any) -> int:
    if isinstance(value, float):
        raise InvalidParameter(f"Invalid value for numeric attribute '{key}': {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"Invalid value for numeric attribute '{key}': {value!r}") from None
    if not numbers.in_int64(number):
        raise InvalidParameter(f"Invalid value for numeric attribute '{key}': {value!r}")
    return number


def parse_model_version_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse a model-versions/search filter; ``version_number`` values become ints.

    Raises:
        InvalidParameter: MLflow's message for the first problem found.
    """
    checked = []
    for clause in _clauses(filter_string, _VERSION_GRAMMAR):
        if clause.entity is Entity.TAG:
            checked.append(_check_tag(clause))
            continue
        if clause.key in VERSION_NUMERIC_ATTRIBUTES:
            if clause.comparator not in _NUMERIC_COMPARATORS:
                raise InvalidParameter(f"Invalid comparator for attribute {clause.key}: {clause.comparator}")
            number = _version_number(clause.key, clause.value)
            checked.append(Comparison(clause.entity, clause.key, clause.comparator, number, None, clause.position))
            continue
        if clause.comparator not in _STRING_COMPARATORS or (
            clause.comparator in (ast.IN, ast.NOT_IN) and clause.key not in ("run_id", "name")
        ):
            raise InvalidParameter(f"Invalid comparator for attribute: {clause.comparator}")
        _check_list_comparator(clause)
        checked.append(_like_ready(clause))
    return tuple(checked)


def asks_for_prompts(clauses: tuple[Comparison, ...]) -> bool:
    """Whether a filter selects prompts: its first clause on the prompt tag is ``= 'true'`` or ``!= 'false'``."""
    for clause in clauses:
        if clause.entity is not Entity.TAG or clause.key != PROMPT_TAG:
            continue
        value = clause.value.lower() if isinstance(clause.value, str) else ""
        return (clause.comparator == ast.EQ and value == "true") or (clause.comparator == ast.NE and value == "false")
    return False


# ---- order_by -------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryOrder:
    """One order_by key: a column from the allowlist and its direction."""

    key: str
    ascending: bool


def _direction_and_text(clause: Any, grammar: Grammar) -> tuple[str, bool, bool]:
    operand, ascending = scan_order_by(clause, grammar)
    has_direction = clause.strip() != operand.text.strip()
    return operand.identifier.text, ascending, has_direction


def parse_registered_model_order_by(order_by: list[str] | None) -> tuple[RegistryOrder, ...]:
    """Parse the order_by list of registered-models/search (``timestamp`` means the last update).

    Raises:
        InvalidParameter: an unparseable clause, an unknown key or a key given twice.
    """
    keys: list[RegistryOrder] = []
    seen: set[str] = set()
    for clause in order_by or []:
        text, ascending, has_direction = _direction_and_text(clause, _MODEL_GRAMMAR)
        # With a direction MLflow splits the clause shell-style, which takes quotes off the key.
        key = unquote(text) if has_direction else text
        if key not in MODEL_ORDER_BY_KEYS:
            valid = set_text(_MODEL_RECOMMENDED_ORDER_BY_KEYS)
            raise InvalidParameter(f"Invalid order by key '{key}' specified. Valid keys are '{valid}'")
        column = _MODEL_ORDER_COLUMN[key]
        if column in seen:
            raise InvalidParameter(f"`order_by` contains duplicate fields: {order_by}")
        seen.add(column)
        keys.append(RegistryOrder("name" if key == "name" else "last_updated_timestamp", ascending))
    if "rm.name" not in seen:
        keys.append(RegistryOrder("name", True))
    return tuple(keys)


def parse_model_version_order_by(order_by: list[str] | None) -> tuple[RegistryOrder, ...]:
    """Parse the order_by list of model-versions/search; MLflow's default order when it is empty.

    Raises:
        InvalidParameter: an unparseable clause, an unknown key or a key given twice.
    """
    clauses = list(order_by or VERSION_DEFAULT_ORDER)
    keys: list[RegistryOrder] = []
    seen: set[str] = set()
    for clause in clauses:
        text, ascending, _ = _direction_and_text(clause, _VERSION_GRAMMAR)
        entity_text, dot, rest = text.partition(".")
        if dot:
            entity = _resolve_entity(entity_text)
            key = unquote(rest)
        else:
            entity, key = Entity.ATTRIBUTE, unquote(text)
        if entity is Entity.ATTRIBUTE and key not in VERSION_ORDER_BY_KEYS:
            raise InvalidParameter(
                f"Invalid attribute key '{key}' specified. Valid keys are '{set_text(sorted(VERSION_ORDER_BY_KEYS))}'"
            )
        if key not in VERSION_ORDER_BY_KEYS:
            raise InvalidParameter(
                f"Invalid order by key '{key}' specified. Valid keys are {set_text(sorted(VERSION_ORDER_BY_KEYS))}"
            )
        if key in seen:
            raise InvalidParameter(f"`order_by` contains duplicate fields: {order_by or list(VERSION_DEFAULT_ORDER)}")
        seen.add(key)
        keys.append(RegistryOrder(key, ascending))
    if "name" not in seen:
        keys.append(RegistryOrder("name", True))
    if "version_number" not in seen:
        keys.append(RegistryOrder("version_number", False))
    return tuple(keys)


# ---- page tokens ----------------------------------------------------------------------


# ---- compiling ------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryQuery:
    """One page of a registry search.

    Attributes:
        sql: the statement, ``$n`` placeholders only; it returns up to ``max_results + 1``
            rows of ``model_key`` (and ``version`` for model versions) in search order.
        args: the placeholders' values.
        offset: where the page starts.
        max_results: the page size asked for.
    """

    sql: str
    args: list
    offset: int
    max_results: int

    def next_token(self, row_count: int) -> str | None:
        """The token of the next page, when this page's statement found more rows than it shows."""
        if self.max_results < 0 or row_count != self.max_results + 1:
            return None
        return offset_token(self.offset + self.max_results)


class _Params:
    def __init__(self):
        self.args: list[Any] = []

    def __call__(self, value: Any, cast: str = "") -> str:
        self.args.append(value)
        return f"${len(self.args)}{cast}"


def _tag_condition(clause: Comparison, kind: str, param: _Params) -> str:
    table, join = _TAG_TABLE[kind]
    return (
        f"EXISTS (SELECT 1 FROM {table} t WHERE {join} AND t.key = {param(clause.key, '::text')} "
        f"AND t.value {_SQL_OPERATOR[clause.comparator]} {param(clause.value, '::text')})"
    )


def _attribute_condition(column: str, clause: Comparison, param: _Params) -> str:
    if clause.comparator in (ast.IN, ast.NOT_IN):
        negate = "NOT " if clause.comparator == ast.NOT_IN else ""
        return f"{negate}({column} = ANY({param(list(clause.value), '::text[]')}))"
    if isinstance(clause.value, int):
        return f"{column} {_SQL_OPERATOR[clause.comparator]} {param(clause.value, '::bigint')}"
    return f"{column} {_SQL_OPERATOR[clause.comparator]} {param(clause.value, '::text')}"


def _prompt_exclusion(
    clauses: tuple[Comparison, ...], kind: str, param: _Params
) -> tuple[tuple[Comparison, ...], str | None]:
    """Leave prompts out unless the filter asks for them; clauses on the prompt tag then go too."""
    if asks_for_prompts(clauses):
        return clauses, None
    table, join = _TAG_TABLE[kind]
    if kind == "version":
        # A name some version of which is a prompt version: all its versions are left out.
        join = "t.model_key = mv.model_key"
    kept = tuple(c for c in clauses if not (c.entity is Entity.TAG and c.key == PROMPT_TAG))
    condition = (
        f"NOT EXISTS (SELECT 1 FROM {table} t WHERE {join} AND t.key = {param(PROMPT_TAG, '::text')} "
        f"AND t.value = {param('true', '::text')})"
    )
    return kept, condition


def _limit(query_params: _Params, offset: int, max_results: int) -> str:
    return f"OFFSET {query_params(offset, '::bigint')} LIMIT {query_params(max(max_results + 1, 0), '::bigint')}"


def compile_registered_model_search(
    *, filter_string: str | None, order_by: list[str] | None, max_results: int, page_token: str | None
) -> RegistryQuery:
    """The statement selecting one page of registered models (their ``model_key``).

    Raises:
        InvalidParameter: a bad filter, order_by clause or page token (MLflow's messages).
    """
    clauses = parse_registered_model_filter(filter_string)
    order = parse_registered_model_order_by(order_by)
    offset = start_offset(page_token)
    param = _Params()
    clauses, exclusion = _prompt_exclusion(clauses, "model", param)
    where = [exclusion] if exclusion else []
    for clause in clauses:
        if clause.entity is Entity.TAG:
            where.append(_tag_condition(clause, "model", param))
        else:
            where.append(_attribute_condition("rm.name", clause, param))
    order_sql = ", ".join(
        f"{_MODEL_ORDER_COLUMN[key.key]} {'ASC' if key.ascending else 'DESC'}" for key in order
    )
    sql = (
        "SELECT rm.model_key FROM registered_models rm"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order_sql} {_limit(param, offset, max_results)}"
    )
    return RegistryQuery(sql, param.args, offset, max_results)


def compile_model_version_search(
    *, filter_string: str | None, order_by: list[str] | None, max_results: int, page_token: str | None
) -> RegistryQuery:
    """The statement selecting one page of model versions (their ``model_key`` and ``version``).

    Raises:
        InvalidParameter: a bad filter, order_by clause or page token (MLflow's messages).
    """
    clauses = parse_model_version_filter(filter_string)
    order = parse_model_version_order_by(order_by)
    offset = start_offset(page_token)
    param = _Params()
    clauses, exclusion = _prompt_exclusion(clauses, "version", param)
    where = [exclusion] if exclusion else []
    for clause in clauses:
        if clause.entity is Entity.TAG:
            where.append(_tag_condition(clause, "version", param))
        else:
            where.append(_attribute_condition(_VERSION_COLUMN[clause.key], clause, param))
    order_sql = ", ".join(f"{_VERSION_COLUMN[key.key]} {'ASC' if key.ascending else 'DESC'}" for key in order)
    sql = (
        "SELECT mv.model_key, mv.version FROM model_versions mv "
        "JOIN registered_models rm ON rm.model_key = mv.model_key"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order_sql} {_limit(param, offset, max_results)}"
    )
    return RegistryQuery(sql, param.args, offset, max_results)
