"""Reading an MLflow backend store (SQLite, PostgreSQL, MySQL or MariaDB) in its own schema, without MLflow installed.

Queries are written once with PostgreSQL's ``$n`` placeholders and standard
double-quoted identifiers (MLflow's ``key`` column is a reserved word in
MySQL); the SQLite source rewrites the placeholders to SQLite's numbered
``?n``, the MySQL one to PyMySQL's ``%s``. Every source reads inside one
read-only transaction for the whole import, so every table is read from the
same snapshot, and streams long results in batches.
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
from itertools import groupby
from operator import itemgetter

import asyncpg

from gateway.store.mlflow_import.errors import ImportRefused

_PLACEHOLDER = re.compile(r"\$(\d+)")


class Source(ABC):
    """A store being read. ``dialect`` is 'sqlite', 'postgresql' or 'mysql'; ``label`` names it without secrets."""

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
    def not_run_id(self, column: str) -> str:
        """An SQL condition: ``column`` is not 32 lowercase hex digits."""

    def exactly(self, column: str) -> str:
        """``column`` as GROUP BY and ORDER BY take it to tell apart strings the store's collation takes as equal."""
        return column

    def differ_exactly(self, column: str) -> str:
        """An aggregate: whether a group's ``column`` values, equal by the store's collation, differ byte by byte."""
        return "0"

    async def through_index(self, table: str, columns: tuple[str, ...]) -> str:
        """``table`` as a FROM clause that reads it through an index leading with ``columns``, for an
        ORDER BY of those; the store's planner is told so where it would sort instead."""
        return table

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

    def not_run_id(self, column: str) -> str:
        return f"(length({column}) <> 32 OR {column} GLOB '*[^0-9a-f]*')"

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

    def not_run_id(self, column: str) -> str:
        return f"{column} !~ '^[0-9a-f]{{32}}$'"

    async def through_index(self, table: str, columns: tuple[str, ...]) -> str:
        # The planner reads a series through a bitmap of the index and sorts it, where walking the
        # index gives it in order for about two thirds of the time. Bitmap scans are turned off for
        # the rest of the read transaction: its other reads are lookups and ranges of an index too.
        if await self.has_index(table, columns):
            async with self._lock:
                await self._conn.execute("SET LOCAL enable_bitmapscan = off")
        return table

    async def close(self) -> None:
        if self._conn is not None:
            try:
                if self._transaction is not None:
                    await self._transaction.rollback()
            finally:
                await self._conn.close()


class MysqlSource(Source):
    """An MLflow MySQL or MariaDB database, read in one consistent-snapshot, read-only transaction.

    Read with PyMySQL (pure Python; the ``mysql`` extra), imported only here, each call in a
    thread as SqliteSource's are. The session takes double-quoted identifiers (``ANSI_QUOTES``).
    A stream reads through an unbuffered cursor, which holds the connection until its result is
    read to the end: it keeps the connection's lock that long, and other reads wait for it
    rather than interleave.
    """

    dialect = "mysql"

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.connect_args = mysql_connect_args(url)
        host = parts.hostname or "localhost"
        socket = f"?unix_socket={self.connect_args['unix_socket']}" if "unix_socket" in self.connect_args else ""
        self.label = f"mysql://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}{socket}"
        self._conn = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        pymysql = _pymysql()
        self._unbuffered = pymysql.cursors.SSCursor
        try:
            self._conn = await asyncio.to_thread(pymysql.connect, **self.connect_args, autocommit=True)
            await asyncio.to_thread(self._begin)
        except pymysql.Error as exc:
            if self._conn is not None:
                self._conn.close()
            raise ImportRefused(f"cannot connect to {self.label}: {exc}") from None

    def _begin(self) -> None:
        with self._conn.cursor() as cursor:
            # A stream's reader may pause while the target catches up; the server waits for it.
            cursor.execute("SET SESSION sql_mode = 'ANSI_QUOTES', net_write_timeout = 3600")
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    @staticmethod
    def _sql(sql: str, args: Sequence) -> tuple[str, list]:
        """PyMySQL's form of a query: ``%s`` for each ``$n``, with the arguments in that order."""
        order: list[int] = []

        def mark(match: re.Match) -> str:
            order.append(int(match.group(1)) - 1)
            return "%s"

        return _PLACEHOLDER.sub(mark, sql.replace("%", "%%")), [args[index] for index in order]

    def _rows(self, sql: str, args: list) -> list[tuple]:
        with self._conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    async def fetch(self, sql: str, *args) -> list[tuple]:
        async with self._lock:
            return await asyncio.to_thread(self._rows, *self._sql(sql, args))

    async def stream(self, sql: str, *args, batch: int = 50_000) -> AsyncIterator[list[tuple]]:
        async with self._lock:
            cursor = self._conn.cursor(self._unbuffered)
            try:
                await asyncio.to_thread(cursor.execute, *self._sql(sql, args))
                # The next batch is read while the caller works on this one.
                ahead = asyncio.ensure_future(asyncio.to_thread(cursor.fetchmany, batch))
                try:
                    while True:
                        # Shielded: cancelled, the read in its thread still ends before the cursor closes.
                        rows = await asyncio.shield(ahead)
                        if not rows:
                            return
                        ahead = asyncio.ensure_future(asyncio.to_thread(cursor.fetchmany, batch))
                        yield list(rows)
                finally:
                    if not ahead.done():
                        with contextlib.suppress(BaseException):
                            await ahead
            finally:
                # Reads what is left of the result, so the connection serves the next query.
                await asyncio.to_thread(cursor.close)

    async def tables(self) -> set[str]:
        rows = await self.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = database()")
        return {row[0] for row in rows}

    async def columns(self, table: str) -> set[str]:
        rows = await self.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = database() AND table_name = $1",
            table,
        )
        return {row[0] for row in rows}

    async def estimated_rows(self, table: str) -> int:
        value = await self.fetchval(
            "SELECT table_rows FROM information_schema.tables WHERE table_schema = database() AND table_name = $1",
            table,
        )
        return int(value or 0)

    async def index_columns(self, table: str) -> list[tuple[str, ...]]:
        return list((await self._indexes(table)).values())

    async def _indexes(self, table: str) -> dict[str, tuple[str, ...]]:
        rows = await self.fetch(
            "SELECT index_name, column_name FROM information_schema.statistics "
            "WHERE table_schema = database() AND table_name = $1 ORDER BY index_name, seq_in_index",
            table,
        )
        return {name: tuple(row[1] for row in group) for name, group in groupby(rows, key=itemgetter(0))}

    def not_run_id(self, column: str) -> str:
        # A binary string, so that the match tells case apart.
        return f"CAST({column} AS BINARY) NOT REGEXP '^[0-9a-f]{{32}}$'"

    def exactly(self, column: str) -> str:
        # MLflow's tables take the server's default collation, which folds case (and ignores trailing spaces).
        return f"CAST({column} AS BINARY)"

    def differ_exactly(self, column: str) -> str:
        return f"min({self.exactly(column)}) <> max({self.exactly(column)})"

    async def through_index(self, table: str, columns: tuple[str, ...]) -> str:
        # MariaDB 10.11 reads a range of run ids through the (run_uuid) index and sorts it rather
        # than reading the (run_uuid, key, step) index in order, at several times the cost.
        for name, found in (await self._indexes(table)).items():
            if found[: len(columns)] == columns:
                return f'{table} FORCE INDEX ("{name}")'
        return table

    async def close(self) -> None:
        if self._conn is not None:
            async with self._lock:
                await asyncio.to_thread(self._conn.close)


def mysql_connect_args(url: str) -> dict:
    """PyMySQL's connect arguments for a MySQL URI as ``mlflow server`` takes it:
    ``mysql://user:password@host:3306/database`` (``mysql+pymysql://`` and the like too;
    ``?unix_socket=/path`` and ``?charset=`` as SQLAlchemy takes them)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    args = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": urllib.parse.unquote(parts.username or ""),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": urllib.parse.unquote(parts.path.lstrip("/")) or None,
        "charset": query.get("charset", "utf8mb4"),
    }
    if "unix_socket" in query:
        args["unix_socket"] = query["unix_socket"]
    return args


def _pymysql():
    try:
        import pymysql
    except ImportError:
        raise ImportRefused(
            "reading a MySQL or MariaDB store needs PyMySQL: pip install 'mlflow-ingestion-gateway[mysql]'"
        ) from None
    return pymysql


def check_source(uri: str) -> None:
    """What :func:`open_source` checks before it connects: a scheme it reads, a SQLite file that
    exists, PyMySQL for a MySQL store (so a command can refuse before it starts anything).

    Raises:
        ImportRefused: the URI cannot be opened.
    """
    base = _scheme(uri)
    if base == "sqlite":
        path = _sqlite_path(uri)
        if not os.path.isfile(path):
            raise ImportRefused(f"sqlite:///{os.path.abspath(path)}: no such file")
    elif base in ("mysql", "mariadb"):
        _pymysql()
    elif base not in ("postgresql", "postgres"):
        _refuse_scheme(uri, base)


def _scheme(uri: str) -> str:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    return scheme.split("+", 1)[0]


def _sqlite_path(uri: str) -> str:
    path = uri.split(":///", 1)[1] if ":///" in uri else ""
    if not path or path == ":memory:":
        raise ImportRefused(f"{uri!r}: give the SQLite file as sqlite:///path/to/mlflow.db")
    return urllib.parse.unquote(path.split("?", 1)[0])


async def open_source(uri: str) -> Source:
    """Open an MLflow backend store by its URI, as ``mlflow server --backend-store-uri`` takes it.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and
    ``postgresql://user:password@host:port/database`` and
    ``mysql://user:password@host:port/database`` (for MariaDB too; a driver suffix such as
    ``postgresql+psycopg2`` or ``mysql+pymysql`` is accepted).

    Raises:
        ImportRefused: an unsupported scheme, a missing file, an unreachable server.
    """
    check_source(uri)
    base = _scheme(uri)
    if base == "sqlite":
        return SqliteSource(_sqlite_path(uri))
    if base in ("postgresql", "postgres"):
        source = PostgresSource(uri)
        await source.open()
        return source
    source = MysqlSource(uri)
    await source.open()
    return source


def _refuse_scheme(uri: str, base: str) -> None:
    if base == "mssql":
        raise ImportRefused("SQL Server stores are not supported: SQLite, PostgreSQL, MySQL and MariaDB stores are")
    raise ImportRefused(f"{uri!r} is not an MLflow backend store URI (sqlite:///..., postgresql://... or mysql://...)")


def placeholders(count: int, start: int = 1) -> str:
    """``$start, ..., $(start+count-1)``, for IN lists."""
    return ", ".join(f"${index}" for index in range(start, start + count))


def chunked(items: Sequence, size: int):
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
