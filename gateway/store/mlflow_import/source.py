"""Reading an MLflow backend store (SQLite or PostgreSQL) in its own schema, without MLflow installed.

Queries are written once with PostgreSQL's ``$n`` placeholders; the SQLite
source rewrites them to SQLite's numbered ``?n``. Both sources read inside one
read-only transaction for the whole import, so every table is read from the
same snapshot, and stream long results in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

import asyncpg

from gateway.store.mlflow_import.errors import ImportRefused

_PLACEHOLDER = re.compile(r"\$(\d+)")


class Source(ABC):
    """A store being read. ``dialect`` is 'sqlite' or 'postgresql'; ``label`` names it without secrets."""

    dialect: str
    label: str

    @abstractmethod
    async def fetch(self, sql: str, *args) -> list[tuple]:
        """Every row of a query, as tuples."""

    @abstractmethod
    def stream(self, sql: str, *args, batch: int = 50_000) -> AsyncIterator[list[tuple]]:
        """The rows of a query in lists of at most ``batch``."""

    @abstractmethod
    async def tables(self) -> set[str]:
        """The names of the store's tables."""

    @abstractmethod
    async def columns(self, table: str) -> set[str]:
        """The names of a table's columns."""

    @abstractmethod
    async def estimated_rows(self, table: str) -> int:
        """About how many rows a table holds, read without scanning it."""

    @abstractmethod
    async def index_columns(self, table: str) -> list[tuple[str, ...]]:
        """The columns of each index of a table, in index order."""

    async def has_index(self, table: str, columns: tuple[str, ...]) -> bool:
        """Whether an index of ``table`` leads with ``columns``, in that order."""
        return any(found[: len(columns)] == columns for found in await self.index_columns(table))

    @abstractmethod
    async def close(self) -> None:
        """Release the connection or file."""

    async def fetchval(self, sql: str, *args):
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None


class SqliteSource(Source):
    """An MLflow SQLite file, opened read-only."""

    dialect = "sqlite"

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.label = f"sqlite:///{self.path}"
        if not os.path.isfile(self.path):
            raise ImportRefused(f"{self.label}: no such file")
        try:
            self._conn = sqlite3.connect(
                f"file:{urllib.parse.quote(self.path)}?mode=ro", uri=True, check_same_thread=False
            )
            # One snapshot for the whole import (the read transaction lasts until close).
            self._conn.isolation_level = None
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ImportRefused(f"{self.label} is not an MLflow store: {exc}") from None
        # Reads are serialised on the connection; a thread runs each so the event loop stays free.
        self._lock = asyncio.Lock()

    @staticmethod
    def _sql(sql: str) -> str:
        return _PLACEHOLDER.sub(r"?\1", sql)

    async def fetch(self, sql: str, *args) -> list[tuple]:
        return await self._in_thread(lambda: self._conn.execute(self._sql(sql), args).fetchall())

    async def _in_thread(self, function, *args):
        async with self._lock:
            return await asyncio.to_thread(function, *args)

    async def stream(self, sql: str, *args, batch: int = 50_000) -> AsyncIterator[list[tuple]]:
        cursor = await self._in_thread(self._conn.execute, self._sql(sql), args)
        # The next batch is read while the caller works on this one: SQLite lets go of the GIL
        # while it steps, so its reading overlaps the caller's work.
        ahead = asyncio.ensure_future(self._in_thread(cursor.fetchmany, batch))
        try:
            while True:
                rows = await ahead
                if not rows:
                    return
                ahead = asyncio.ensure_future(self._in_thread(cursor.fetchmany, batch))
                yield rows
        finally:
            if not ahead.done():
                with contextlib.suppress(BaseException):
                    await ahead
            cursor.close()

    async def tables(self) -> set[str]:
        rows = await self.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}

    async def columns(self, table: str) -> set[str]:
        rows = await self.fetch("SELECT name FROM pragma_table_info($1)", table)
        return {row[0] for row in rows}

    async def estimated_rows(self, table: str) -> int:
        # The greatest rowid: exact for a table only ever appended to, and read from the b-tree's edge.
        return int(await self.fetchval(f'SELECT coalesce(max(rowid), 0) FROM "{table}"') or 0)

    async def index_columns(self, table: str) -> list[tuple[str, ...]]:
        found = []
        for (name,) in await self.fetch("SELECT name FROM pragma_index_list($1)", table):
            rows = await self.fetch("SELECT name FROM pragma_index_info($1) ORDER BY seqno", name)
            found.append(tuple(row[0] for row in rows))
        return found

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._conn.close)


class PostgresSource(Source):
    """An MLflow PostgreSQL database, read in one repeatable-read, read-only transaction."""

    dialect = "postgresql"

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.url = urllib.parse.urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))
        host = parts.hostname or "localhost"
        self.label = f"postgresql://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"
        self._conn: asyncpg.Connection | None = None
        self._transaction = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            self._conn = await asyncpg.connect(self.url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ImportRefused(f"cannot connect to {self.label}: {exc}") from None
        self._transaction = self._conn.transaction(isolation="repeatable_read", readonly=True)
        await self._transaction.start()

    async def fetch(self, sql: str, *args) -> list[tuple]:
        async with self._lock:
            return [tuple(row) for row in await self._conn.fetch(sql, *args)]

    async def stream(self, sql: str, *args, batch: int = 50_000) -> AsyncIterator[list[tuple]]:
        async with self._lock:
            cursor = await self._conn.cursor(sql, *args)
        while True:
            async with self._lock:
                rows = await cursor.fetch(batch)
            if not rows:
                return
            yield [tuple(row) for row in rows]

    async def copy_out(self, sql: str, *args) -> AsyncIterator[bytes]:
        """A query's rows as binary COPY data (header to trailer), as the server sends them."""
        pieces: asyncio.Queue = asyncio.Queue(maxsize=16)
        done = object()

        async def produce() -> None:
            try:
                await self._conn.copy_from_query(sql, *args, output=pieces.put, format="binary")
            finally:
                await pieces.put(done)

        async with self._lock:
            producing = asyncio.ensure_future(produce())
            try:
                while (piece := await pieces.get()) is not done:
                    yield bytes(piece)
                await producing
            finally:
                if not producing.done():
                    producing.cancel()
                    with contextlib.suppress(BaseException):
                        await producing

    async def tables(self) -> set[str]:
        rows = await self.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {row[0] for row in rows}

    async def columns(self, table: str) -> set[str]:
        rows = await self.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
        return {row[0] for row in rows}

    async def estimated_rows(self, table: str) -> int:
        value = await self.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)", table
        )
        return max(int(value or 0), 0)

    async def index_columns(self, table: str) -> list[tuple[str, ...]]:
        rows = await self.fetch(
            """SELECT array_agg(a.attname::text ORDER BY k.place)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, place)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = to_regclass($1)
               GROUP BY i.indexrelid""",
            table,
        )
        return [tuple(row[0]) for row in rows]

    async def close(self) -> None:
        if self._conn is not None:
            try:
                if self._transaction is not None:
                    await self._transaction.rollback()
            finally:
                await self._conn.close()


async def open_source(uri: str) -> Source:
    """Open an MLflow backend store by its URI, as ``mlflow server --backend-store-uri`` takes it.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and
    ``postgresql://user:password@host:port/database`` (a driver suffix such as
    ``postgresql+psycopg2`` is accepted).

    Raises:
        ImportRefused: an unsupported scheme, a missing file, an unreachable server.
    """
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path == ":memory:":
            raise ImportRefused(f"{uri!r}: give the SQLite file as sqlite:///path/to/mlflow.db")
        return SqliteSource(urllib.parse.unquote(path.split("?", 1)[0]))
    if base in ("postgresql", "postgres"):
        source = PostgresSource(uri)
        await source.open()
        return source
    if base in ("mysql", "mariadb", "mssql"):
        raise ImportRefused(f"{base} stores are not supported yet: only SQLite and PostgreSQL stores can be imported")
    raise ImportRefused(f"{uri!r} is not an MLflow backend store URI (sqlite:///... or postgresql://...)")


def placeholders(count: int, start: int = 1) -> str:
    """``$start, ..., $(start+count-1)``, for IN lists."""
    return ", ".join(f"${index}" for index in range(start, start + count))


def chunked(items: Sequence, size: int):
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
