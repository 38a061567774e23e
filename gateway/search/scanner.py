"""The lexical layer shared by every search grammar (runs, experiments, the registry):
the scanner that splits a filter into raw clauses and an order_by clause into its parts,
with MLflow's messages for text of the wrong shape. The parsers give the clauses meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.errors import InvalidParameter
from gateway.search import ast
from gateway.search.ast import Aggregate, Entity


def set_text(items: Iterable[str]) -> str:
    """Render names the way MLflow's messages render a Python set."""
    return "{" + ", ".join(repr(item) for item in items) + "}"


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
class Identifier:
    entity_text: str | None  # as written, None when the key stands alone
    key: str  # unquoted
    text: str  # the identifier as written
    position: int


@dataclass(frozen=True, slots=True)
class Operand:
    identifier: Identifier
    aggregate: Aggregate | None
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Literal:
    """A value as written. ``kind``: string, word (unquoted or backticks), int, float, list."""

    kind: str
    text: str
    value: object
    position: int


@dataclass(frozen=True, slots=True)
class RawClause:
    operand: Operand
    comparator: str
    literal: Literal | None
    position: int


class Scanner:
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

    def operand(self, allow_aggregates: bool) -> Operand:
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
            return Operand(identifier, aggregate, self.text[start : self.pos], start)
        if self.peek() == "(":
            raise _SyntaxError("'(': parentheses are not supported, join clauses with AND", start)
        identifier = self.identifier()
        return Operand(identifier, None, identifier.text, start)

    def identifier(self) -> Identifier:
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
            return Identifier(None, unquote(first), first, start)
        self.pos += 1
        key_start = self.pos
        head = self.peek()
        if head in ("`", '"', "'"):
            key = unquote(self.quoted(head))
        elif words := self.match(_DOTTED_WORDS):
            key = words.group()
        else:
            raise _SyntaxError(f"expected a key after '{first}.'", key_start)
        return Identifier(first, key, self.text[start : self.pos], start)

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

    def literal(self, comparator: str) -> Literal:
        self.skip_whitespace()
        start = self.pos
        head = self.peek()
        if not head:
            raise _SyntaxError(f"expected a value after '{comparator}'", start)
        if head in ("'", '"'):
            text = self.quoted(head)
            return Literal("string", text, text[1:-1], start)
        if head == "`":
            text = self.quoted(head)
            return Literal("word", text, text, start)
        if head == "(":
            return self.list_literal()
        if number := self.match(_NUMBER):
            text = number.group()
            if _INTEGER.fullmatch(text):
                return Literal("int", text, int(text), start)
            return Literal("float", text, float(text), start)
        if word := self.match(_WORD):
            return Literal("word", word.group(), word.group(), start)
        raise _SyntaxError(f"unexpected {head!r}, expected a value after '{comparator}'", start)

    def list_literal(self) -> Literal:
        start = self.pos
        if self.text.find(")", start) < 0:
            raise _SyntaxError("unclosed '('", start)
        self.pos += 1
        items: list[object] = []
        self.skip_whitespace()
        if self.peek() == ")":
            self.pos += 1
            return Literal("list", self.text[start : self.pos], (), start)
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
        return Literal("list", self.text[start : self.pos], tuple(items), start)

    def clause(self, allow_aggregates: bool) -> RawClause:
        start = self.pos
        operand = self.operand(allow_aggregates)
        comparator = self.comparator(operand.text)
        if comparator in (ast.IS_NULL, ast.IS_NOT_NULL):
            return RawClause(operand, comparator, None, start)
        literal = self.literal(comparator)
        if comparator in (ast.IN, ast.NOT_IN) and literal.kind != "list":
            raise _SyntaxError(
                f"{comparator} takes a parenthesised list of quoted strings, found {literal.text}",
                literal.position,
            )
        return RawClause(operand, comparator, literal, start)


_ILL_FORMED_LIST = (
    "While parsing a list in the query, expected a non-empty list of string values, but got ill-formed list."
)


def unquote(text: str) -> str:
    """Strip one pair of quotes then one pair of backticks, as MLflow does to keys."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in ("'", '"'):
        text = text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "`":
        text = text[1:-1]
    return text


@dataclass(frozen=True)
class Grammar:
    """What differs between the run and the experiment search grammars."""

    resolve_entity: Callable[[str], Entity]
    search_attributes: frozenset[str]
    order_by_attributes: frozenset[str]
    numeric_attributes: frozenset[str]
    list_attributes: tuple[str, ...]
    allows_aggregates: bool
    # MLflow quotes the offending token in one grammar and not in the other.
    quotes_invalid_clause: bool


def check_characters(text: str, what: str) -> None:
    if found := _FORBIDDEN_CHARACTER.search(text):
        raise InvalidParameter(
            f"Invalid {what}: the character U+{ord(found.group()):04X} is not allowed "
            f"(at position {found.start()})"
        )


def scan_filter(filter_string: str, grammar: Grammar) -> list[RawClause]:
    """Split a filter into raw clauses, checking only its shape."""
    scanner = Scanner(filter_string)
    clauses: list[RawClause] = []
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


def list_value(literal: Literal) -> tuple[str, ...]:
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


def complete_like_escape(pattern: str) -> str:
    """Make a trailing lone backslash of a LIKE pattern match a backslash.

    Backslash escapes the next character in PostgreSQL's LIKE (so it does in
    MLflow's SQL store); one left dangling at the end is an error there.
    """
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def scan_order_by(clause: str, grammar: Grammar) -> tuple[Operand, bool]:
    """Read ``operand [ASC|DESC]``; MLflow's messages for a clause of the wrong shape."""
    if not isinstance(clause, str):
        raise InvalidParameter(f"Invalid order_by clause '{clause}'. Could not be parsed.")
    check_characters(clause, "order_by clause")
    scanner = Scanner(clause)
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


_AGGREGATES = {"MIN": Aggregate.MIN, "MAX": Aggregate.MAX, "LATEST": Aggregate.LATEST}
