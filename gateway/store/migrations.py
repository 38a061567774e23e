"""Applies the numbered SQL files of sql/ once each, safe when several gateways start at once."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from gateway.store.distribution import distribute

_MIGRATION_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")
# Any constant works; it only has to be the same in every gateway process.
_MIGRATION_LOCK_ID = 0x6D6C666C6F77  # "mlflow"


def migrations_dir() -> Path:
    """The folder of the numbered migrations (sql/ at the project root, shipped in the package)."""
    package_copy = Path(__file__).resolve().parent.parent / "sql"
    return package_copy


def list_migrations(folder: Path | None = None) -> list[tuple[int, str, Path]]:
    """The migrations in version order as (version, name, path)."""
    folder = folder or migrations_dir()
    found = []
    for path in folder.iterdir():
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path))
    found.sort()
    return found


async def migrate(conn: asyncpg.Connection, *, up_to: int | None = None) -> list[str]:
    """Apply every migration not yet applied (to version ``up_to`` if given), each in its own transaction.

    An advisory lock serialises gateways migrating the same database at once;
    the second one finds the work done. On a Citus database the tables not yet
    placed are then distributed or made reference tables
    (:func:`gateway.store.distribution.distribute`).

    Returns:
        the names of the migrations this call applied, then the tables it placed
        on Citus (``distributed:<table>``, ``reference:<table>``).
    """
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS gateway_schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM gateway_schema_migrations")}
        for version, name, path in list_migrations():
            if version in done or (up_to is not None and version > up_to):
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO gateway_schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied_now.append(name)
        if up_to is None:
            applied_now += await distribute(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now
