"""Parser of MLflow search filters and order_by clauses.

The grammar is MLflow 3's (``mlflow.utils.search_utils``), including where it is
lenient: clauses are joined by AND, and MLflow also accepts stray or missing
ANDs between clauses, so this parser does too. One extension: a metric may be
wrapped in ``MIN(...)``, ``MAX(...)`` or ``LATEST(...)`` (case-insensitive), as
in Databricks; plain ``metrics.k`` is ``LATEST(metrics.k)``.

Validation runs in MLflow's order, so the same bad filter gets the same message:
first the shape of the whole filter, then each clause's key and value, then each
clause's comparator. Where MLflow's message does not say where the problem is,
ours gives the 0-based character position in the filter.

    filter     := AND* [clause (AND* clause)*] AND*
    clause     := operand comparator value | operand IS [NOT] NULL
    operand    := identifier | (MIN | MAX | LATEST) "(" identifier ")"
    identifier := [entity "."] key
    key        := word ("." word)* | `quoted` | "quoted" | 'quoted'
    value      := 'string' | "string" | number | "(" string ("," string)* [","] ")"
    order_by   := operand [ASC | DESC]
"""

from __future__ import annotations

from gateway.errors import InvalidParameter
from gateway.mlflow import numbers
from gateway.search import ast
from gateway.search.ast import Aggregate, Comparison, Entity, OrderKey
from gateway.search.scanner import (
    Grammar,
    Identifier,
    Literal,
    Operand,
    RawClause,
    check_characters,
    complete_like_escape,
    list_value,
    scan_filter,
    scan_order_by,
    set_text,
)

# ---------------------------------------------------------------------------
# Vocabulary (MLflow's, from SearchUtils and SearchExperimentsUtils)

_RUN_ENTITY_BY_NAME: dict[str, Entity] = {
    "metric": Entity.METRIC,
    "metrics": Entity.METRIC,
    "parameter": Entity.PARAM,
    "parameters": Entity.PARAM,
    "param": Entity.PARAM,
    "params": Entity.PARAM,
    "tag": Entity.TAG,
    "tags": Entity.TAG,
    "attribute": Entity.ATTRIBUTE,
    "attributes": Entity.ATTRIBUTE,
    "attr": Entity.ATTRIBUTE,
    "run": Entity.ATTRIBUTE,
    "dataset": Entity.DATASET,
    "datasets": Entity.DATASET,
}
_RUN_ENTITY_NAMES = ["metric", "parameter", "tag", "attribute", "dataset"]

_EXPERIMENT_ENTITY_BY_NAME: dict[str, Entity] = {
    "attribute": Entity.ATTRIBUTE,
    "tag": Entity.TAG,
    "tags": Entity.TAG,
}

RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
RUN_SEARCH_ATTRIBUTES = frozenset(
    {"run_id", "run_name", "status", "user_id", "artifact_uri", "run name", "Run name", "Run Name"}
    | RUN_NUMERIC_ATTRIBUTES
)
RUN_ORDER_BY_ATTRIBUTES = frozenset(
    {"run_id", "run_name", "status", "user_id", "artifact_uri"} | RUN_NUMERIC_ATTRIBUTES
)
_RUN_ATTRIBUTE_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}
DATASET_KEYS = frozenset({"name", "digest", "context"})

EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id"} | EXPERIMENT_NUMERIC_ATTRIBUTES)

# Fixed orders, so that messages listing them are stable (MLflow prints Python
# sets, whose order changes from process to process).
_METRIC_COMPARATORS = ("=", "!=", ">", ">=", "<", "<=")
_PARAM_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL")
_TAG_COMPARATORS = _PARAM_COMPARATORS
_STRING_ATTRIBUTE_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_DATASET_COMPARATORS = _STRING_ATTRIBUTE_COMPARATORS
_EXPERIMENT_STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE")
_EXPERIMENT_ID_COMPARATORS = ("=", "!=", "IN", "NOT IN")


# ---------------------------------------------------------------------------
# Lexical patterns


# ---------------------------------------------------------------------------
# The two grammars


def _resolve_run_entity(text: str) -> Entity:
    name = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "`" else text
    entity = _RUN_ENTITY_BY_NAME.get(name)
    if entity is None:
        raise InvalidParameter(f"Invalid entity type '{name}'. Valid values are {_RUN_ENTITY_NAMES}")
    return entity


def _resolve_experiment_entity(text: str) -> Entity:
    entity = _EXPERIMENT_ENTITY_BY_NAME.get(text)
    if entity is None:
        raise InvalidParameter(
            f"Invalid entity type '{text}'. Valid entity types are ('attribute', 'tag', 'tags')"
        )
    return entity


_RUN_GRAMMAR = Grammar(
    resolve_entity=_resolve_run_entity,
    search_attributes=RUN_SEARCH_ATTRIBUTES,
    order_by_attributes=RUN_ORDER_BY_ATTRIBUTES,
    numeric_attributes=RUN_NUMERIC_ATTRIBUTES,
    list_attributes=("run_id",),
    allows_aggregates=True,
    quotes_invalid_clause=True,
)

_EXPERIMENT_GRAMMAR = Grammar(
    resolve_entity=_resolve_experiment_entity,
    search_attributes=EXPERIMENT_ATTRIBUTES,
    order_by_attributes=EXPERIMENT_ATTRIBUTES,
    numeric_attributes=EXPERIMENT_NUMERIC_ATTRIBUTES,
    list_attributes=("experiment_id",),
    allows_aggregates=False,
    quotes_invalid_clause=False,
)


# ---------------------------------------------------------------------------
# Filters


def _entity_and_key(identifier: Identifier, grammar: Grammar, valid_attributes: frozenset[str]) -> tuple[Entity, str]:
    """Resolve an identifier's entity and validate its key (MLflow's _get_identifier)."""
    if identifier.entity_text is None:
        entity = Entity.ATTRIBUTE
    else:
        entity = grammar.resolve_entity(identifier.entity_text)
    key = identifier.key
    if entity is Entity.ATTRIBUTE and key not in valid_attributes:
        raise InvalidParameter(
            f"Invalid attribute key '{key}' specified. Valid keys are '{set_text(sorted(valid_attributes))}'"
        )
    if entity is Entity.DATASET and key not in DATASET_KEYS:
        raise InvalidParameter(
            f"Invalid dataset key '{key}' specified. Valid keys are '{set_text(sorted(DATASET_KEYS))}'"
        )
    return entity, key


def _check_aggregate(operand: Operand, entity: Entity, key: str) -> Aggregate | None:
    if operand.aggregate is None:
        return Aggregate.LATEST if entity is Entity.METRIC else None
    if entity is not Entity.METRIC:
        raise InvalidParameter(
            f"Invalid comparison clause. {operand.aggregate.value}(...) applies to metrics only, "
            f"found {entity.value} '{key}' at position {operand.position}"
        )
    return operand.aggregate


def _string_value(literal: Literal, entity_label: str) -> str:
    """A quoted string value, or MLflow's error for the other kinds of value."""
    if literal.kind == "string":
        return literal.value
    if literal.kind == "word":
        raise InvalidParameter(
            "Parameter value is either not quoted or unidentified quote types used for string value "
            f"{literal.text}. Use either single or double quotes."
        )
    raise InvalidParameter(
        f"Expected a quoted string value for {entity_label} (e.g. 'my-value'). Got value {literal.text}"
    )


def _clause_value(literal: Literal, entity: Entity, key: str, grammar: Grammar) -> ast.Value:
    """Check and convert a clause's value by what its key names (MLflow's _get_value)."""
    if entity is Entity.METRIC:
        if literal.kind not in ("int", "float"):
            raise InvalidParameter(f"Expected numeric value type for metric. Found {literal.text}")
        return float(literal.text)
    if entity in (Entity.PARAM, Entity.TAG):
        if literal.kind == "list":
            raise InvalidParameter(
                f"Expected a quoted string value for {entity.value} (e.g. 'my-value'). Got value {literal.text}"
            )
        return _string_value(literal, entity.value)
    if entity is Entity.ATTRIBUTE:
        if key in grammar.numeric_attributes:
            if literal.kind not in ("int", "float"):
                raise InvalidParameter(
                    f"Expected numeric value type for numeric attribute: {key}. Found {literal.text}"
                )
            return literal.value
        if literal.kind == "list":
            if key not in grammar.list_attributes:
                raise InvalidParameter(
                    f"Only {sorted(grammar.list_attributes)} attributes support comparison with a list "
                    "of quoted string values."
                )
            return list_value(literal)
        if literal.kind in ("int", "float"):
            raise InvalidParameter(f"Expected a quoted string value for attributes. Got value {literal.text}")
        return _string_value(literal, "attributes")
    # datasets
    if literal.kind == "list":
        return list_value(literal)
    if literal.kind in ("int", "float"):
        raise InvalidParameter(f"Expected a quoted string value for dataset attributes. Got value {literal.text}")
    return _string_value(literal, "dataset attributes")


def _build_comparison(raw: RawClause, grammar: Grammar) -> Comparison:
    identifier = raw.operand.identifier
    entity, key = _entity_and_key(identifier, grammar, grammar.search_attributes)
    aggregate = _check_aggregate(raw.operand, entity, key)
    if raw.comparator in (ast.IS_NULL, ast.IS_NOT_NULL):
        if grammar is _EXPERIMENT_GRAMMAR:
            if entity is not Entity.TAG:
                raise InvalidParameter(
                    f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
                )
        elif entity not in (Entity.TAG, Entity.PARAM):
            raise InvalidParameter(
                "IS NULL / IS NOT NULL is only supported for tags and params, "
                f"not for '{entity.value}' '{key}'"
            )
        value = None
    else:
        value = _clause_value(raw.literal, entity, key, grammar)
    if entity is Entity.ATTRIBUTE and grammar is _RUN_GRAMMAR:
        key = _RUN_ATTRIBUTE_ALIASES.get(key, key)
    if raw.comparator in (ast.LIKE, ast.ILIKE) and isinstance(value, str):
        value = complete_like_escape(value)
    return Comparison(entity, key, raw.comparator, value, aggregate, raw.position)


def invalid_comparator(comparator: str, allowed: tuple[str, ...], closing_quote: bool) -> InvalidParameter:
    # MLflow's texts differ by entity in whether the set is followed by a closing quote.
    return InvalidParameter(
        f"Invalid comparator '{comparator}' not one of '{set_text(allowed)}" + ("'" if closing_quote else "")
    )


def _check_list_comparator(clause: Comparison) -> None:
    if isinstance(clause.value, tuple) and clause.comparator not in (ast.IN, ast.NOT_IN):
        raise InvalidParameter(
            f"Invalid comparison clause. The comparator '{clause.comparator}' takes a single quoted string, "
            f"not a list (at position {clause.position})"
        )


def _check_run_comparator(clause: Comparison) -> None:
    comparator = clause.comparator
    if clause.entity is Entity.METRIC:
        if comparator not in _METRIC_COMPARATORS:
            raise invalid_comparator(comparator, _METRIC_COMPARATORS, closing_quote=False)
    elif clause.entity is Entity.PARAM:
        if comparator not in _PARAM_COMPARATORS:
            raise invalid_comparator(comparator, _PARAM_COMPARATORS, closing_quote=True)
    elif clause.entity is Entity.TAG:
        if comparator not in _TAG_COMPARATORS:
            raise invalid_comparator(comparator, _TAG_COMPARATORS, closing_quote=False)
    elif clause.entity is Entity.ATTRIBUTE:
        if clause.key in ("start_time", "end_time"):
            if comparator not in _METRIC_COMPARATORS:
                # MLflow lists the string comparators here; kept for identical messages.
                raise invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=False)
        elif comparator not in _STRING_ATTRIBUTE_COMPARATORS:
            raise invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=True)
    elif comparator not in _DATASET_COMPARATORS:
        raise invalid_comparator(comparator, _DATASET_COMPARATORS, closing_quote=False)
    _check_list_comparator(clause)


def _check_experiment_comparison(clause: Comparison) -> Comparison:
    """Validate an experiment clause's comparator (and convert experiment ids), as MLflow's store does."""
    comparator = clause.comparator
    if clause.entity is Entity.TAG:
        if comparator not in _EXPERIMENT_STRING_COMPARATORS + (ast.IS_NULL, ast.IS_NOT_NULL):
            raise InvalidParameter(f"Invalid comparator for tag: {comparator}")
        return clause
    if clause.key == "experiment_id":
        if comparator not in _EXPERIMENT_ID_COMPARATORS:
            raise InvalidParameter(f"Invalid comparator for experiment_id: {comparator}")
        _check_list_comparator(clause)
        if isinstance(clause.value, tuple):
            value = tuple(numbers.experiment_id(item) for item in clause.value)
        else:
            value = numbers.experiment_id(clause.value)
        return Comparison(clause.entity, clause.key, comparator, value, None, clause.position)
    if clause.key in EXPERIMENT_NUMERIC_ATTRIBUTES:
        if comparator not in _METRIC_COMPARATORS:
            raise invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=False)
        if isinstance(clause.value, float):
            raise InvalidParameter(f"Invalid value for numeric attribute '{clause.key}': {str(clause.value)!r}")
        return clause
    if comparator not in _STRING_ATTRIBUTE_COMPARATORS:
        raise invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=True)
    if comparator not in _EXPERIMENT_STRING_COMPARATORS:
        raise InvalidParameter(f"Invalid comparator for string attribute: {comparator}")
    return clause


def parse_filter(filter_string: str | None, grammar: Grammar) -> list[Comparison]:
    if not filter_string:
        return []
    check_characters(filter_string, "filter")
    if not filter_string.strip():
        raise InvalidParameter(f"Invalid filter '{filter_string}'. Could not be parsed.")
    raw_clauses = scan_filter(filter_string, grammar)
    return [_build_comparison(raw, grammar) for raw in raw_clauses]


def parse_run_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse a runs/search filter.

    Args:
        filter_string: MLflow's filter syntax; None or "" means no filter.

    Returns:
        The clauses, all of which a run must satisfy.

    Raises:
        InvalidParameter: with MLflow's message for the first problem found.
    """
    clauses = parse_filter(filter_string, _RUN_GRAMMAR)
    for clause in clauses:
        _check_run_comparator(clause)
    return tuple(clauses)


def parse_experiment_filter(filter_string: str | None) -> tuple[Comparison, ...]:
    """Parse an experiments/search filter.

    Experiment ids in the result are ints; comparators are accepted in any case
    (MLflow only accepts upper-case LIKE / ILIKE here, which looks unintended).

    Args:
        filter_string: MLflow's filter syntax; None or "" means no filter.

    Returns:
        The clauses, all of which an experiment must satisfy.

    Raises:
        InvalidParameter: with MLflow's message for the first problem found.
    """
    clauses = parse_filter(filter_string, _EXPERIMENT_GRAMMAR)
    return tuple(_check_experiment_comparison(clause) for clause in clauses)


# ---------------------------------------------------------------------------
# order_by


def parse_run_order_by(order_by: list[str] | None) -> tuple[OrderKey, ...]:
    """Parse the order_by list of runs/search.

    Args:
        order_by: clauses such as ``"metrics.loss DESC"``, ``"attributes.start_time"``,
            ``"MIN(metrics.loss)"``; None or [] for MLflow's default order.

    Returns:
        The keys in order, with attribute aliases resolved.

    Raises:
        InvalidParameter: an unparseable clause, an unknown key, a dataset key, or
            the same key twice (MLflow's messages).
    """
    keys: list[OrderKey] = []
    seen: set[tuple[Entity, str, Aggregate | None]] = set()
    for clause in order_by or []:
        operand, ascending = scan_order_by(clause, _RUN_GRAMMAR)
        entity, key = _entity_and_key(operand.identifier, _RUN_GRAMMAR, RUN_ORDER_BY_ATTRIBUTES)
        if entity is Entity.DATASET:
            raise InvalidParameter(f"Invalid identifier type '{entity.value}'")
        aggregate = _check_aggregate(operand, entity, key)
        if entity is Entity.ATTRIBUTE:
            key = _RUN_ATTRIBUTE_ALIASES.get(key, key)
        if (entity, key, aggregate) in seen:
            raise InvalidParameter(f"`order_by` contains duplicate fields: {order_by}")
        seen.add((entity, key, aggregate))
        keys.append(OrderKey(entity, key, ascending, aggregate))
    return tuple(keys)


def parse_experiment_order_by(order_by: list[str] | None) -> tuple[OrderKey, ...]:
    """Parse the order_by list of experiments/search.

    Args:
        order_by: clauses such as ``"name"``, ``"creation_time DESC"``; None or []
            for MLflow's default order.

    Returns:
        The keys in order (all attributes).

    Raises:
        InvalidParameter: an unparseable clause, an unknown attribute or a tag key.
    """
    keys: list[OrderKey] = []
    for clause in order_by or []:
        operand, ascending = scan_order_by(clause, _EXPERIMENT_GRAMMAR)
        entity, key = _entity_and_key(operand.identifier, _EXPERIMENT_GRAMMAR, EXPERIMENT_ATTRIBUTES)
        if entity is not Entity.ATTRIBUTE:
            raise InvalidParameter(f"Invalid order_by entity: {entity.value}")
        keys.append(OrderKey(entity, key, ascending))
    return tuple(keys)
