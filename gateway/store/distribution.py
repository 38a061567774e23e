"""The tables' places on a Citus cluster: run-scoped ones distributed by run id, the rest replicated.

On a database with the ``citus`` extension, :func:`distribute` (run by every
migration, after the numbered files) makes:

- every run-scoped table a distributed table by ``run_id``, all colocated with
  ``runs``: a run's rows, of whichever table, live in one shard group on one
  worker, so a statement about one run is answered by one worker and the joins
  between them on run_id (get-run, search) run on the workers side by side;
- every other table a reference table (a copy on each node): experiments and
  their tags, logged models, the model registry and gc's list of files to remove
  are small, shared by every run, and joined with the distributed tables
  (search reads experiments beside runs), which Citus allows for reference
  tables only.

``gateway_schema_migrations`` stays a plain table of the coordinator: only the
migration runner reads it.

A database already distributed is left as it is, table by table, so a table a
later migration adds is placed the next time ``gateway migrate`` (or ``serve``)
runs, and a single-node database moved to Citus (``CREATE EXTENSION citus``, its
workers added) is distributed, rows and all, by the same command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from gateway.store.tables import RUN_SCOPED_TABLES

# Distributed by run_id, colocated with the first (runs): runs and every table whose
# rows belong to one run (gc removes a run's rows from each of them).
DISTRIBUTED_TABLES = ("runs", *RUN_SCOPED_TABLES)
REFERENCE_TABLES = (
    "experiments",
    "experiment_tags",
    "logged_models",
    "logged_model_params",
    "logged_model_tags",
    "gc_artifact_removals",
    "registered_models",
    "model_versions",
    "registered_model_tags",
    "model_version_tags",
    "registered_model_aliases",
)
DISTRIBUTION_COLUMN = "run_id"

# Settings of the gateway's own connections (a placeholder, and so nothing, on a plain
# PostgreSQL). Citus runs a statement that spans shards over up to 16 connections to
# each worker, opened for it and closed after its transaction but one: a gateway's
# flushes and reads, many at once on its pool, opened and closed worker connections all
# the time (seconds for a run's first writes, 40-200 ms a call after). With one
# connection per worker and session, each pooled connection keeps its own to every
# worker and the pool's size sets the parallelism.
SESSION_SETTINGS = {"citus.max_adaptive_executor_pool_size": "1"}

# Run ids by the shard that holds them, shards in id order and runs in run_id order within one.
_SHARD_GROUPS = """
SELECT array_agg(run_id ORDER BY run_id) AS run_ids
FROM unnest($1::uuid[]) AS r(run_id)
GROUP BY get_shard_id_for_distribution_column('runs', run_id)
ORDER BY get_shard_id_for_distribution_column('runs', run_id)
"""


async def is_citus(conn: asyncpg.Connection) -> bool:
    """Whether the database has the citus extension (so its tables are, or are to be, distributed)."""
    return await conn.fetchval("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')")


async def distribute(conn: asyncpg.Connection) -> list[str]:
    """Place every table not yet placed, on a Citus database; nothing on a plain PostgreSQL.

    Tables that hold rows already (a single-node database moved to Citus) have them
    copied into their shards, and the local copies truncated, as Citus does.

    Returns:
        the tables this call placed, as ``distributed:<table>`` or ``reference:<table>``.
    """
    if not await is_citus(conn):
        return []
    placed_already = {
        row["table_name"]
        for row in await conn.fetch("SELECT logicalrelid::regclass::text AS table_name FROM pg_dist_partition")
    }
    placed: list[str] = []
    for table in REFERENCE_TABLES:
        if table not in placed_already:
            async with conn.transaction():
                await conn.execute("SELECT create_reference_table($1)", table)
                await _drop_local_rows(conn, table)
            placed.append(f"reference:{table}")
    anchor = DISTRIBUTED_TABLES[0]
    for table in DISTRIBUTED_TABLES:
        if table not in placed_already:
            async with conn.transaction():
                await conn.execute(
                    "SELECT create_distributed_table($1, $2, colocate_with => $3)",
                    table,
                    DISTRIBUTION_COLUMN,
                    "default" if table == anchor else anchor,
                )
                await _drop_local_rows(conn, table)
            placed.append(f"distributed:{table}")
    return placed


async def _drop_local_rows(conn: asyncpg.Connection, table: str) -> None:
    """Remove the coordinator's own copy of rows a table held before it was placed (Citus copied
    them into the shards and leaves the old ones behind until told to drop them)."""
    await conn.execute("SELECT truncate_local_data_after_distributing_table($1)", table)


class RunShards:
    """Splits a set of runs into the groups a statement that locks rows may take at once.

    Citus refuses row locks (``FOR SHARE``, ``FOR UPDATE``) in a statement that
    spans shards, and runs such a statement's parts on the workers side by side,
    in no fixed order. A statement about the runs of one shard is sent whole to
    the worker that holds it and behaves as on one PostgreSQL. So every writer
    that locks runs, or the rows of runs, locks them a shard at a time, shards
    in shard id order and runs in run_id order within one: one global order, so
    that flushes, deletes, gc and compaction cannot deadlock. On a plain
    PostgreSQL the whole set is one group in run_id order, today's order.

    Whether the database is distributed is read once, on first use.
    """

    def __init__(self) -> None:
        self._citus: bool | None = None

    async def distributed(self, conn: asyncpg.Connection) -> bool:
        """Whether the database is a Citus one (read once)."""
        if self._citus is None:
            self._citus = await is_citus(conn)
        return self._citus

    async def groups(self, conn: asyncpg.Connection, run_ids: Iterable[str | uuid.UUID]) -> list[list[str]]:
        """The runs (32-hex ids, or uuids) in lock groups of 32-hex ids, in lock order; none for no runs."""
        ordered = sorted({r.hex if isinstance(r, uuid.UUID) else r for r in run_ids})
        if len(ordered) <= 1 or not await self.distributed(conn):
            return [ordered] if ordered else []
        return [[run_id.hex for run_id in row["run_ids"]] for row in await conn.fetch(_SHARD_GROUPS, ordered)]

    async def lock_runs(
        self, conn: asyncpg.Connection, run_ids: Iterable[str | uuid.UUID], columns: str, condition: str = "",
        *args: object,
    ) -> list[asyncpg.Record]:
        """Lock the named runs that meet ``condition`` ``FOR UPDATE``, a lock group at a time.

        Args:
            run_ids: the runs to lock (those gone or not meeting the condition are skipped).
            columns: the columns of runs to return, as SQL.
            condition: more SQL for the WHERE clause (``AND ...``), its parameters from ``$2``.
            args: the condition's parameters.
        Returns:
            the locked rows, in lock order.
        """
        rows: list[asyncpg.Record] = []
        for group in await self.groups(conn, run_ids):
            rows += await conn.fetch(
                f"SELECT {columns} FROM runs WHERE run_id = ANY($1::uuid[]) {condition} ORDER BY run_id FOR UPDATE",
                group,
                *args,
            )
        return rows


# Run creation holds its experiment's lock shared, and what deletes, restores or
# removes an experiment with its runs holds it exclusively, so a run cannot be
# created into an experiment that is leaving (gc would leave it without one, a
# delete would leave it active). An advisory lock, not a row lock on the
# experiment: on Citus experiments is a reference table, whose row locks are
# taken on every node and deadlocked concurrent run creation; an advisory lock
# is the coordinator's alone. Its key is (this class, the id's 32-bit hash):
# ids that share a hash only wait for each other.
_EXPERIMENT_LOCK_CLASS = 0x6D6C6578  # "mlex"
_LOCK_EXPERIMENT_SHARED = "SELECT pg_advisory_xact_lock_shared($1::integer, hashint8($2::bigint))"
_LOCK_EXPERIMENT = "SELECT pg_advisory_xact_lock($1::integer, hashint8($2::bigint))"


async def lock_experiment(conn: asyncpg.Connection, experiment_id: int, *, shared: bool = False) -> None:
    """Take an experiment's lock until the transaction ends: shared to create a run in it,
    exclusive to change or remove it with its runs."""
    await conn.execute(
        _LOCK_EXPERIMENT_SHARED if shared else _LOCK_EXPERIMENT, _EXPERIMENT_LOCK_CLASS, experiment_id
    )
