"""What every compiled search shares: the statement and the binder of its arguments, the
sort keys, and keyset pagination (a page starts strictly after the last row of the one before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from gateway.mlflow import numbers
from gateway.search import ast
from gateway.search import page_token as tokens


LIFECYCLE_CONDITION = {
    "ACTIVE_ONLY": "= 'active'",
    "DELETED_ONLY": "= 'deleted'",
    "ALL": "IN ('active', 'deleted')",
}

SQL_OPERATOR = {
    ast.EQ: "=",
    ast.NE: "<>",
    ast.LT: "<",
    ast.LE: "<=",
    ast.GT: ">",
    ast.GE: ">=",
    ast.LIKE: "LIKE",
    ast.ILIKE: "ILIKE",
}


@dataclass(frozen=True)
class CompiledQuery:
    """A search ready to run.

    Attributes:
        sql: the statement, with ``$1..$n`` placeholders only.
        args: the values for the placeholders, in order.
        sort_columns: names of the columns after the first one (the id) that
            make up the keyset, as they appear in each returned row.
        fingerprint: identifies the search, so its page tokens fit only it.
        keyset_columns: every column of the keyset in order, the id included.
        keyset_types: the SQL type of each keyset column.
        row_limit: the most rows the page needs (``max_results + 1``); 0 when unpaged.
        then: a statement whose rows follow this one's, to run when this one
            returns fewer than ``row_limit`` rows (its own ``then`` likewise).
    """

    sql: str
    args: list
    sort_columns: list[str]
    fingerprint: str = field(default="", repr=False)
    keyset_columns: tuple[str, ...] = field(default=(), repr=False)
    keyset_types: tuple[str, ...] = field(default=(), repr=False)
    row_limit: int = field(default=0, repr=False)
    then: CompiledQuery | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY key: an optional rank (missing/NaN last), then the value."""

    value_sql: str
    value_type: str
    ascending: bool
    output: str
    rank_sql: str | None = None
    # (column, characters): a text key an index holds by its first characters
    # (sql/007). The ORDER BY leads with that prefix, which sorts like the value
    # except for ties that the value then breaks, so the index delivers the rows.
    indexed_prefix: tuple[str, int] | None = None

    @property
    def rank_output(self) -> str:
        return self.output + "_rank"


class Binder:
    """Collects placeholder values; each value gets the next ``$n`` and a cast."""

    def __init__(self) -> None:
        self.args: list = []

    def __call__(self, value: object, sql_type: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{sql_type}"

    def number(self, value: int | float) -> str:
        """Bind a number compared with a bigint or double column."""
        if isinstance(value, float):
            return self(value, "double precision")
        if numbers.in_int64(value):
            return self(value, "bigint")
        # Out of bigint's range: numeric compares exactly with any bigint.
        return self(Decimal(value), "numeric")


def keyset_columns(sort_keys: list[SortKey]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...]]:
    """Names, types, and whether each is preceded by its rank, of every keyset column."""
    names: list[str] = []
    types: list[str] = []
    ranked: list[bool] = []
    for key in sort_keys:
        if key.rank_sql is not None:
            names.append(key.rank_output)
            types.append(tokens.RANK)
            ranked.append(False)
        names.append(key.output)
        types.append(key.value_type)
        ranked.append(key.rank_sql is not None)
    return tuple(names), tuple(types), tuple(ranked)


def after_keyset(sort_keys: list[SortKey], keyset: list, bind: Binder) -> str:
    """The condition for rows strictly after ``keyset`` in the order of ``sort_keys``.

    Lexicographic: some key is past the cursor's and all keys before it are
    equal. A ranked key's value is NULL exactly when its rank is not 0, so the
    rank alone decides between rows of different ranks or NULL values.
    """
    cursor = iter(keyset)
    equal_so_far: list[str] = []
    alternatives: list[str] = []
    bound = ""
    for index, key in enumerate(sort_keys):
        rank = next(cursor) if key.rank_sql is not None else 0
        value = next(cursor)
        if rank != 0:
            cursor_rank = bind(rank, "integer")
            after = f"{key.rank_sql} > {cursor_rank}"
            equal = f"{key.rank_sql} = {cursor_rank}"
        else:
            cursor_value = bind(value, key.value_type)
            operator = ">" if key.ascending else "<"
            after = f"{key.value_sql} {operator} {cursor_value}"
            if index == 0 and key.rank_sql in (None, "0"):
                # Implied by the alternatives, but PostgreSQL can start an index
                # scan from it instead of reading the rows before the cursor again.
                bound = f"{key.value_sql} {operator}= {cursor_value} AND "
                if key.indexed_prefix is not None:
                    column, characters = key.indexed_prefix
                    cursor_prefix = text_prefix(cursor_value, characters)
                    bound += f"{text_prefix(column, characters)} {operator}= {cursor_prefix} AND "
            elif key.rank_sql is not None:
                after = f"({key.rank_sql} > 0 OR {after})"
            # A non-NULL value implies rank 0.
            equal = f"{key.value_sql} = {cursor_value}"
        alternatives.append("(" + " AND ".join([*equal_so_far, after]) + ")")
        equal_so_far.append(equal)
    return bound + "(" + "\n       OR ".join(alternatives) + ")"


def text_prefix(operand: str, characters: int) -> str:
    return f'left({operand}, {characters}) COLLATE "C"'


def select_and_order(sort_keys: list[SortKey], id_column: str) -> tuple[list[str], list[str]]:
    """The extra SELECT expressions and the ORDER BY items for ``sort_keys``."""
    selected: list[str] = []
    order_items: list[str] = []
    for key in sort_keys:
        direction = "" if key.ascending else " DESC"
        if key.indexed_prefix is not None:
            order_items.append(text_prefix(*key.indexed_prefix) + direction)
        if key.rank_sql is not None:
            selected.append(f"{key.rank_sql} AS {key.rank_output}")
            order_items.append(key.rank_output)
        if key.output == id_column:
            order_items.append(key.value_sql + direction)
        else:
            selected.append(f"{key.value_sql} AS {key.output}")
            order_items.append(key.output + direction)
    return selected, order_items


def next_page_token(query: CompiledQuery, rows: list, max_results: int) -> str | None:
    if len(rows) <= max_results:
        return None
    last_row = rows[max_results - 1]
    values = [last_row[column] for column in query.keyset_columns]
    return tokens.encode(query.fingerprint, values, query.keyset_types)


def assemble(
    *,
    id_column: str,  # qualified, e.g. "r.run_id"; the row holds it under the bare name
    table: str,
    joins: list[str],
    conditions: list[str],
    sort_keys: list[SortKey],
    keyset: list | None,
    search_fingerprint: str,
    max_results: int,
    bind: Binder,
    then: CompiledQuery | None = None,
) -> CompiledQuery:
    id_name = id_column.split(".")[1]
    names, types, _ranked = keyset_columns(sort_keys)
    if keyset is not None:
        conditions = [*conditions, after_keyset(sort_keys, keyset, bind)]
    selected, order_items = select_and_order(sort_keys, id_name)
    limit = bind(max_results + 1, "bigint")
    lines = [
        "SELECT " + ",\n       ".join([id_column, *selected]),
        f"FROM {table}",
        *joins,
        "WHERE " + "\n  AND ".join(conditions),
        "ORDER BY " + ", ".join(order_items),
        f"LIMIT {limit}",
    ]
    sort_columns = [name for name in names if name != id_name]
    return CompiledQuery(
        sql="\n".join(lines),
        args=bind.args,
        sort_columns=sort_columns,
        fingerprint=search_fingerprint,
        keyset_columns=names,
        keyset_types=types,
        row_limit=max_results + 1,
        then=then,
    )


def decode_keyset(page_token: str | None, search_fingerprint: str, sort_keys: list[SortKey]) -> list | None:
    if not page_token:
        return None
    _names, types, ranked = keyset_columns(sort_keys)
    return tokens.decode(page_token, search_fingerprint, types, ranked)
