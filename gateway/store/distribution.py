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

import asyncpg

# Distributed by run_id, colocated with the first (runs). gc removes a run's rows
# from each of the others (gateway/store/gc.py RUN_SCOPED_TABLES, checked by a test).
DISTRIBUTED_TABLES = (
    "runs",
    "metric_chunks",
    "metric_rows",
    "metric_summaries",
    "params",
    "run_tags",
    "run_dataset_inputs",
    "run_model_inputs",
    "run_model_outputs",
)
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
