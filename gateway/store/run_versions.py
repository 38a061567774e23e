"""Run versions (sql/011_run_versions.sql): every write to what runs/search shows of a run bumps its count.

Every statement that changes a run's row, latest metrics, params, tags, inputs or
outputs is followed, in its transaction, by :func:`bump` of the runs it changed.
A reader that reads a run's version before its content (in a later statement)
holds content at least as new as that version: kept under the version, it is
given again only while the version read is the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

# In run order, as every other statement locks runs, so two bumps cannot deadlock.
_BUMP = """
INSERT INTO run_versions (run_id, version)
SELECT DISTINCT w.run_id, 1 FROM unnest($1::uuid[]) AS w(run_id) ORDER BY w.run_id
ON CONFLICT (run_id) DO UPDATE SET version = run_versions.version + 1
"""

# The runs locked FOR SHARE with their stages, and the active ones bumped: a flush of
# points alone checks its runs here, after its COPY, and saves a statement. Each run is
# locked before its version (the insert reads the locked rows), in run order.
_CHECK_AND_BUMP = """
WITH checked AS MATERIALIZED (
    SELECT run_id, lifecycle_stage FROM runs WHERE run_id = ANY($1::uuid[]) ORDER BY run_id FOR SHARE),
bumped AS (
    INSERT INTO run_versions (run_id, version)
    SELECT run_id, 1 FROM checked WHERE lifecycle_stage = 'active' ORDER BY run_id
    ON CONFLICT (run_id) DO UPDATE SET version = run_versions.version + 1)
SELECT run_id, lifecycle_stage FROM checked
"""

_READ = "SELECT run_id, version FROM run_versions WHERE run_id = ANY($1::uuid[])"


async def bump(conn: asyncpg.Connection, run_ids: Iterable) -> None:
    """Count a change of each run (ids as hex strings or uuids); the caller's transaction holds it."""
    ids = list(run_ids)
    if ids:
        await conn.execute(_BUMP, ids)


async def check_and_bump(conn: asyncpg.Connection, run_ids: list[str]) -> dict[str, str]:
    """Lock the runs FOR SHARE and count a change of the active ones, in one statement (on one
    database: Citus locks runs a shard at a time).

    Returns:
        each stored run's lifecycle stage, by hex run id (a run not stored is missing).
    """
    rows = await conn.fetch(_CHECK_AND_BUMP, run_ids)
    return {row["run_id"].hex: row["lifecycle_stage"] for row in rows}


async def read(conn: asyncpg.Connection | asyncpg.Pool, run_ids: list) -> dict[str, int]:
    """The versions of the runs, by hex run id; a run never changed since its creation is at 0."""
    found = {row["run_id"].hex: row["version"] for row in await conn.fetch(_READ, run_ids)}
    return {(r if isinstance(r, str) else r.hex): found.get(r if isinstance(r, str) else r.hex, 0) for r in run_ids}
