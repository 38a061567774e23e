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

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.errors import InvalidParameter
from gateway.search import ast
from gateway.search.ast import Aggregate, Comparison, Entity, OrderKey

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

_AGGREGATES = {"MIN": Aggregate.MIN, "MAX": Aggregate.MAX, "LATEST": Aggregate.LATEST}


def _set_text(items: Iterable[str]) -> str:
    """Render names the way MLflow's messages render a Python set."""
    return "{" + ", ".join(repr(item) for item in items) + "}"


# ---------------------------------------------------------------------------
# Lexical patterns

_WORD = re.compile(r"\w+")
_DOTTED_WORDS = re.compile(r"\w+(?:\.\w+)*")
# Quoted text as MLflow's SQL tokenizer delimits it: a doubled quote or a
# backslash-quote does not end the string. The text between the outer quotes
# is taken as is (MLflow does not unescape it either).
_SINGLE_QUOTED = re.compile(r"'(?:''|\\'|[^'])*'")
_DOUBLE_QUOTED = re.compile(r'"(?:""|\\"|[^"])*"')
_BACKTICK_QUOTED = re.compile(r"`(?:``|[^`])*`")
# Numbers as MLflow's tokenizer reads them: no leading '+', no hex; a number
# followed by a letter or underscore is a word (as in ``metrics.1key``).
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?[eE]-?\d+|\d+\.\d*|\.\d+|\d+)(?!\w)")
_INTEGER = re.compile(r"-?\d+")
_OPERATOR = re.compile(r"[<>=!~]+")
_WHITESPACE = re.compile(r"\s*")
# PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded.
_FORBIDDEN_CHARACTER = re.compile(r"[\x00\ud800-\udfff]")


class _SyntaxError(Exception):
    """The filter's shape is wrong; converted to the caller's message."""

    def __init__(self, detail: str, position: int):
        super().__init__(detail)
        self.detail = detail
        self.position = position


class _ClauseError(Exception):
    """A clause-level error whose message is final (MLflow's text)."""


@dataclass(frozen=True, slots=True)
class _Identifier:
    entity_text: str | None  # as written, None when the key stands alone
    key: str  # unquoted
    text: str  # the identifier as written
    position: int


@dataclass(frozen=True, slots=True)
class _Operand:
    identifier: _Identifier
    aggregate: Aggregate | None
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class _Literal:
    """A value as written. ``kind``: string, word (unquoted or backticks), int, float, list."""

    kind: str
    text: str
    value: object
    position: int


@dataclass(frozen=True, slots=True)
class _RawClause:
    operand: _Operand
    comparator: str
    literal: _Literal | None
    position: int


class _Scanner:
    """A cursor over the filter text, reading one syntactic element at a time."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip_whitespace(self) -> None:
        self.pos = _WHITESPACE.match(self.text, self.pos).end()

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def match(self, pattern: re.Pattern) -> re.Match | None:
        found = pattern.match(self.text, self.pos)
        if found:
            self.pos = found.end()
        return found

    def peek_word(self) -> str:
        found = _WORD.match(self.text, self.pos)
        return found.group() if found else ""

    def quoted(self, quote: str) -> str:
        """Read a quoted string starting at the cursor; return it with its quotes."""
        pattern = {"'": _SINGLE_QUOTED, '"': _DOUBLE_QUOTED, "`": _BACKTICK_QUOTED}[quote]
        start = self.pos
        found = self.match(pattern)
        if not found:
            raise _SyntaxError(f"unterminated quoted text starting with {quote}", start)
        return found.group()

    # -- clauses --------------------------------------------------------------

    def operand(self, allow_aggregates: bool) -> _Operand:
        start = self.pos
        word = self.peek_word()
        after_word = _WHITESPACE.match(self.text, self.pos + len(word)).end()
        if word and not word[0].isdigit() and self.text.startswith("(", after_word):
            aggregate = _AGGREGATES.get(word.upper()) if allow_aggregates else None
            if aggregate is None:
                closing = self.text.find(")", after_word)
                if closing < 0:
                    raise _SyntaxError(f"unclosed '(' after {word!r}", after_word)
                raise _ClauseError(
                    "Invalid comparison clause. Expected 'Identifier' found "
                    f"'{self.text[start : closing + 1]}'"
                )
            self.pos = after_word + 1
            self.skip_whitespace()
            identifier = self.identifier()
            self.skip_whitespace()
            if self.peek() != ")":
                raise _SyntaxError(f"expected ')' to close {word}(", self.pos)
            self.pos += 1
            return _Operand(identifier, aggregate, self.text[start : self.pos], start)
        if self.peek() == "(":
            raise _SyntaxError("'(': parentheses are not supported, join clauses with AND", start)
        identifier = self.identifier()
        return _Operand(identifier, None, identifier.text, start)

    def identifier(self) -> _Identifier:
        start = self.pos
        head = self.peek()
        if head in ("`", '"'):
            first = self.quoted(head)
        elif head == "'" or _NUMBER.match(self.text, self.pos):
            literal = self.quoted("'") if head == "'" else self.match(_NUMBER).group()
            raise _ClauseError(f"Invalid comparison clause. Expected 'Identifier' found '{literal}'")
        elif word := self.match(_WORD):
            first = word.group()
        elif self.at_end():
            raise _SyntaxError("expected a key", start)
        else:
            raise _SyntaxError(f"unexpected {head!r}, expected a key", start)
        if self.peek() != ".":
            return _Identifier(None, _unquote(first), first, start)
        self.pos += 1
        key_start = self.pos
        head = self.peek()
        if head in ("`", '"', "'"):
            key = _unquote(self.quoted(head))
        elif words := self.match(_DOTTED_WORDS):
            key = words.group()
        else:
            raise _SyntaxError(f"expected a key after '{first}.'", key_start)
        return _Identifier(first, key, self.text[start : self.pos], start)

    def comparator(self, operand_text: str) -> str:
        self.skip_whitespace()
        start = self.pos
        if self.at_end():
            raise _SyntaxError(f"expected a comparison operator after '{operand_text}'", start)
        if operator := self.match(_OPERATOR):
            return operator.group()
        word = self.peek_word().upper()
        if word in ("LIKE", "ILIKE", "RLIKE", "IN"):
            self.match(_WORD)
            return word
        if word == "NOT":
            self.match(_WORD)
            self.skip_whitespace()
            negated = self.peek_word().upper()
            if negated not in ("LIKE", "ILIKE", "RLIKE", "IN"):
                raise _SyntaxError("expected LIKE, ILIKE or IN after NOT", self.pos)
            self.match(_WORD)
            return f"NOT {negated}"
        if word == "IS":
            self.match(_WORD)
            self.skip_whitespace()
            negated = self.peek_word().upper() == "NOT"
            if negated:
                self.match(_WORD)
                self.skip_whitespace()
            if self.peek_word().upper() != "NULL":
                raise _SyntaxError("expected NULL or NOT NULL after IS", self.pos)
            self.match(_WORD)
            return ast.IS_NOT_NULL if negated else ast.IS_NULL
        found = self.peek_word() or self.peek()
        raise _SyntaxError(f"unexpected {found!r}, expected a comparison operator after '{operand_text}'", start)

    def literal(self, comparator: str) -> _Literal:
        self.skip_whitespace()
        start = self.pos
        head = self.peek()
        if not head:
            raise _SyntaxError(f"expected a value after '{comparator}'", start)
        if head in ("'", '"'):
            text = self.quoted(head)
            return _Literal("string", text, text[1:-1], start)
        if head == "`":
            text = self.quoted(head)
            return _Literal("word", text, text, start)
        if head == "(":
            return self.list_literal()
        if number := self.match(_NUMBER):
            text = number.group()
            if _INTEGER.fullmatch(text):
                return _Literal("int", text, int(text), start)
            return _Literal("float", text, float(text), start)
        if word := self.match(_WORD):
            return _Literal("word", word.group(), word.group(), start)
        raise _SyntaxError(f"unexpected {head!r}, expected a value after '{comparator}'", start)

    def list_literal(self) -> _Literal:
        start = self.pos
        if self.text.find(")", start) < 0:
            raise _SyntaxError("unclosed '('", start)
        self.pos += 1
        items: list[object] = []
        self.skip_whitespace()
        if self.peek() == ")":
            self.pos += 1
            return _Literal("list", self.text[start : self.pos], (), start)
        while True:
            self.skip_whitespace()
            head = self.peek()
            if head in ("'", '"'):
                try:
                    items.append(self.quoted(head)[1:-1])
                except _SyntaxError:
                    raise _ClauseError(_ILL_FORMED_LIST) from None
            elif number := self.match(_NUMBER):
                text = number.group()
                items.append(int(text) if _INTEGER.fullmatch(text) else float(text))
            else:
                raise _ClauseError(_ILL_FORMED_LIST)
            self.skip_whitespace()
            separator = self.peek()
            self.pos += 1
            if separator == ")":
                break
            if separator != ",":
                raise _ClauseError(_ILL_FORMED_LIST)
            self.skip_whitespace()
            if self.peek() == ")":  # a trailing comma, as in ('a',)
                self.pos += 1
                break
        return _Literal("list", self.text[start : self.pos], tuple(items), start)

    def clause(self, allow_aggregates: bool) -> _RawClause:
        start = self.pos
        operand = self.operand(allow_aggregates)
        comparator = self.comparator(operand.text)
        if comparator in (ast.IS_NULL, ast.IS_NOT_NULL):
            return _RawClause(operand, comparator, None, start)
        literal = self.literal(comparator)
        if comparator in (ast.IN, ast.NOT_IN) and literal.kind != "list":
            raise _SyntaxError(
                f"{comparator} takes a parenthesised list of quoted strings, found {literal.text}",
                literal.position,
            )
        return _RawClause(operand, comparator, literal, start)


_ILL_FORMED_LIST = (
    "While parsing a list in the query, expected a non-empty list of string values, but got ill-formed list."
)


def _unquote(text: str) -> str:
    """Strip one pair of quotes then one pair of backticks, as MLflow does to keys."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in ("'", '"'):
        text = text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "`":
        text = text[1:-1]
    return text


# ---------------------------------------------------------------------------
# The two grammars


@dataclass(frozen=True)
class _Grammar:
    """What differs between the run and the experiment search grammars."""

    resolve_entity: Callable[[str], Entity]
    search_attributes: frozenset[str]
    order_by_attributes: frozenset[str]
    numeric_attributes: frozenset[str]
    list_attributes: tuple[str, ...]
    allows_aggregates: bool
    # MLflow quotes the offending token in one grammar and not in the other.
    quotes_invalid_clause: bool


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


_RUN_GRAMMAR = _Grammar(
    resolve_entity=_resolve_run_entity,
    search_attributes=RUN_SEARCH_ATTRIBUTES,
    order_by_attributes=RUN_ORDER_BY_ATTRIBUTES,
    numeric_attributes=RUN_NUMERIC_ATTRIBUTES,
    list_attributes=("run_id",),
    allows_aggregates=True,
    quotes_invalid_clause=True,
)

_EXPERIMENT_GRAMMAR = _Grammar(
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


def _check_characters(text: str, what: str) -> None:
    if found := _FORBIDDEN_CHARACTER.search(text):
        raise InvalidParameter(
            f"Invalid {what}: the character U+{ord(found.group()):04X} is not allowed "
            f"(at position {found.start()})"
        )


def _scan_filter(filter_string: str, grammar: _Grammar) -> list[_RawClause]:
    """Split a filter into raw clauses, checking only its shape."""
    scanner = _Scanner(filter_string)
    clauses: list[_RawClause] = []
    try:
        while True:
            scanner.skip_whitespace()
            if scanner.at_end():
                return clauses
            word = scanner.peek_word()
            if word.upper() == "AND":
                scanner.match(_WORD)
                continue
            if word.upper() in ("OR", "NOT"):
                shown = f"'{word}'" if grammar.quotes_invalid_clause else word
                raise InvalidParameter(f"Invalid clause(s) in filter string: {shown}")
            if scanner.peek() == ";":
                if filter_string[scanner.pos + 1 :].strip():
                    raise InvalidParameter(
                        f"Search filter contained multiple expression {filter_string!r}. "
                        "Provide AND-ed expression list."
                    )
                raise _SyntaxError("unexpected ';'", scanner.pos)
            clauses.append(scanner.clause(grammar.allows_aggregates))
    except _SyntaxError as error:
        raise InvalidParameter(
            f"Invalid clause(s) in filter string: {error.detail} at position {error.position}"
        ) from None
    except _ClauseError as error:
        raise InvalidParameter(str(error)) from None


def _entity_and_key(identifier: _Identifier, grammar: _Grammar, valid_attributes: frozenset[str]) -> tuple[Entity, str]:
    """Resolve an identifier's entity and validate its key (MLflow's _get_identifier)."""
    if identifier.entity_text is None:
        entity = Entity.ATTRIBUTE
    else:
        entity = grammar.resolve_entity(identifier.entity_text)
    key = identifier.key
    if entity is Entity.ATTRIBUTE and key not in valid_attributes:
        raise InvalidParameter(
            f"Invalid attribute key '{key}' specified. Valid keys are '{_set_text(sorted(valid_attributes))}'"
        )
    if entity is Entity.DATASET and key not in DATASET_KEYS:
        raise InvalidParameter(
            f"Invalid dataset key '{key}' specified. Valid keys are '{_set_text(sorted(DATASET_KEYS))}'"
        )
    return entity, key


def _check_aggregate(operand: _Operand, entity: Entity, key: str) -> Aggregate | None:
    if operand.aggregate is None:
        return Aggregate.LATEST if entity is Entity.METRIC else None
    if entity is not Entity.METRIC:
        raise InvalidParameter(
            f"Invalid comparison clause. {operand.aggregate.value}(...) applies to metrics only, "
            f"found {entity.value} '{key}' at position {operand.position}"
        )
    return operand.aggregate


def _string_value(literal: _Literal, entity_label: str) -> str:
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


def _list_value(literal: _Literal) -> tuple[str, ...]:
    items = literal.value
    if not items:
        raise InvalidParameter(
            "While parsing a list in the query, expected a non-empty list of string values, but got empty list"
        )
    if not all(isinstance(item, str) for item in items):
        raise InvalidParameter(
            "While parsing a list in the query, expected string value, punctuation, or whitespace, "
            f"but got different type in list: {items}"
        )
    return items


def _clause_value(literal: _Literal, entity: Entity, key: str, grammar: _Grammar) -> ast.Value:
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
            return _list_value(literal)
        if literal.kind in ("int", "float"):
            raise InvalidParameter(f"Expected a quoted string value for attributes. Got value {literal.text}")
        return _string_value(literal, "attributes")
    # datasets
    if literal.kind == "list":
        return _list_value(literal)
    if literal.kind in ("int", "float"):
        raise InvalidParameter(f"Expected a quoted string value for dataset attributes. Got value {literal.text}")
    return _string_value(literal, "dataset attributes")


def _build_comparison(raw: _RawClause, grammar: _Grammar) -> Comparison:
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
        value = _complete_like_escape(value)
    return Comparison(entity, key, raw.comparator, value, aggregate, raw.position)


def _complete_like_escape(pattern: str) -> str:
    """Make a trailing lone backslash of a LIKE pattern match a backslash.

    Backslash escapes the next character in PostgreSQL's LIKE (so it does in
    MLflow's SQL store); one left dangling at the end is an error there.
    """
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def _invalid_comparator(comparator: str, allowed: tuple[str, ...], closing_quote: bool) -> InvalidParameter:
    # MLflow's texts differ by entity in whether the set is followed by a closing quote.
    return InvalidParameter(
        f"Invalid comparator '{comparator}' not one of '{_set_text(allowed)}" + ("'" if closing_quote else "")
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
            raise _invalid_comparator(comparator, _METRIC_COMPARATORS, closing_quote=False)
    elif clause.entity is Entity.PARAM:
        if comparator not in _PARAM_COMPARATORS:
            raise _invalid_comparator(comparator, _PARAM_COMPARATORS, closing_quote=True)
    elif clause.entity is Entity.TAG:
        if comparator not in _TAG_COMPARATORS:
            raise _invalid_comparator(comparator, _TAG_COMPARATORS, closing_quote=False)
    elif clause.entity is Entity.ATTRIBUTE:
        if clause.key in ("start_time", "end_time"):
            if comparator not in _METRIC_COMPARATORS:
                # MLflow lists the string comparators here; kept for identical messages.
                raise _invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=False)
        elif comparator not in _STRING_ATTRIBUTE_COMPARATORS:
            raise _invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=True)
    elif comparator not in _DATASET_COMPARATORS:
        raise _invalid_comparator(comparator, _DATASET_COMPARATORS, closing_quote=False)
    _check_list_comparator(clause)


def _parse_experiment_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParameter(
            f"Invalid experiment ID '{text}'. Experiment ID must be a valid integer."
        ) from None


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
            value = tuple(_parse_experiment_id(item) for item in clause.value)
        else:
            value = _parse_experiment_id(clause.value)
        return Comparison(clause.entity, clause.key, comparator, value, None, clause.position)
    if clause.key in EXPERIMENT_NUMERIC_ATTRIBUTES:
        if comparator not in _METRIC_COMPARATORS:
            raise _invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=False)
        if isinstance(clause.value, float):
            raise InvalidParameter(f"Invalid value for numeric attribute '{clause.key}': {str(clause.value)!r}")
        return clause
    if comparator not in _STRING_ATTRIBUTE_COMPARATORS:
        raise _invalid_comparator(comparator, _STRING_ATTRIBUTE_COMPARATORS, closing_quote=True)
    if comparator not in _EXPERIMENT_STRING_COMPARATORS:
        raise InvalidParameter(f"Invalid comparator for string attribute: {comparator}")
    return clause


def _parse_filter(filter_string: str | None, grammar: _Grammar) -> list[Comparison]:
    if not filter_string:
        return []
    _check_characters(filter_string, "filter")
    if not filter_string.strip():
        raise InvalidParameter(f"Invalid filter '{filter_string}'. Could not be parsed.")
    raw_clauses = _scan_filter(filter_string, grammar)
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
    clauses = _parse_filter(filter_string, _RUN_GRAMMAR)
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
    clauses = _parse_filter(filter_string, _EXPERIMENT_GRAMMAR)
    return tuple(_check_experiment_comparison(clause) for clause in clauses)


# ---------------------------------------------------------------------------
# order_by


def _scan_order_by(clause: str, grammar: _Grammar) -> tuple[_Operand, bool]:
    """Read ``operand [ASC|DESC]``; MLflow's messages for a clause of the wrong shape."""
    if not isinstance(clause, str):
        raise InvalidParameter(f"Invalid order_by clause '{clause}'. Could not be parsed.")
    _check_characters(clause, "order_by clause")
    scanner = _Scanner(clause)
    scanner.skip_whitespace()
    try:
        operand = scanner.operand(grammar.allows_aggregates)
    except (_SyntaxError, _ClauseError):
        raise InvalidParameter(f"Invalid order_by clause '{clause}'. Could not be parsed.") from None
    ascending = True
    scanner.skip_whitespace()
    if word := scanner.match(_WORD):
        direction = word.group().lower()
        if direction not in ("asc", "desc"):
            raise InvalidParameter(f"Invalid ordering key in order_by clause '{clause}'.")
        ascending = direction == "asc"
        scanner.skip_whitespace()
    if not scanner.at_end():
        raise InvalidParameter(f"Invalid order_by clause '{clause}'. Could not be parsed.")
    return operand, ascending


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
        operand, ascending = _scan_order_by(clause, _RUN_GRAMMAR)
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
        operand, ascending = _scan_order_by(clause, _EXPERIMENT_GRAMMAR)
        entity, key = _entity_and_key(operand.identifier, _EXPERIMENT_GRAMMAR, EXPERIMENT_ATTRIBUTES)
        if entity is not Entity.ATTRIBUTE:
            raise InvalidParameter(f"Invalid order_by entity: {entity.value}")
        keys.append(OrderKey(entity, key, ascending))
    return tuple(keys)
