"""The runs CSV, as Databricks' "Download CSV" lays it out, streamed page by page.

Columns: Run ID, Name, Source Type, Source Name, User, Status, then one column
per param key and one per metric key (the latest value) found in the exported
runs, each group sorted by key. A run lacking a key has an empty cell there.

The export reads one consistent snapshot (a read-only REPEATABLE READ
transaction): the header's keys are listed first, then the runs are read in
keyset pages of the search order, so runs written meanwhile are neither half
in the file nor shift rows between pages. Only one page of runs is in memory at
a time; the key lists grow with the number of distinct keys, not runs.

Both ``gateway export-runs-csv`` and the HTTP endpoint use :func:`runs_csv`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import AsyncIterator

import asyncpg

from gateway import search
from gateway.mlflow.wire import SOURCE_NAME_TAG, SOURCE_TYPE_TAG, USER_TAG
from gateway.store import searching
from gateway.store.connections import transaction
from gateway.store.replicas import ReadRouter

FIXED_COLUMNS = ("Run ID", "Name", "Source Type", "Source Name", "User", "Status")
DEFAULT_PAGE_SIZE = 1000


def format_metric(value: float) -> str:
    """A latest metric value as the CSV writes it: ``repr`` of the float, NaN as ``NaN``."""
    if math.isnan(value):
        return "NaN"
    return repr(value)


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue()


async def _keys(conn: asyncpg.Connection, table: str, matching: search.CompiledQuery) -> list[str]:
    # ``table`` is one of two fixed names; the runs subquery carries every user value as a parameter.
    rows = await conn.fetch(
        f"SELECT DISTINCT key COLLATE \"C\" AS key FROM {table} WHERE run_id IN ({matching.sql}) ORDER BY 1",
        *matching.args,
    )
    return [row["key"] for row in rows]


async def _page_rows(
    conn: asyncpg.Connection, run_ids: list, param_keys: list[str], metric_keys: list[str]
) -> list[list[str]]:
    """The CSV rows of one page of runs, in the order of ``run_ids``."""
    infos = await conn.fetch(
        "SELECT run_id, name, user_id, status FROM runs WHERE run_id = ANY($1::uuid[])", run_ids
    )
    tags = await conn.fetch(
        "SELECT run_id, key, value FROM run_tags WHERE run_id = ANY($1::uuid[]) AND key = ANY($2::text[])",
        run_ids,
        [SOURCE_TYPE_TAG, SOURCE_NAME_TAG, USER_TAG],
    )
    params = await conn.fetch(
        "SELECT run_id, key, value FROM params WHERE run_id = ANY($1::uuid[])", run_ids
    )
    metrics = await conn.fetch(
        "SELECT run_id, key, value FROM metric_summaries WHERE run_id = ANY($1::uuid[])", run_ids
    )
    tags_by_run: dict = {}
    for row in tags:
        tags_by_run.setdefault(row["run_id"], {})[row["key"]] = row["value"]
    params_by_run: dict = {}
    for row in params:
        params_by_run.setdefault(row["run_id"], {})[row["key"]] = row["value"]
    metrics_by_run: dict = {}
    for row in metrics:
        metrics_by_run.setdefault(row["run_id"], {})[row["key"]] = format_metric(row["value"])
    info_by_run = {row["run_id"]: row for row in infos}
    lines = []
    for run_id in run_ids:
        info = info_by_run[run_id]
        run_tags = tags_by_run.get(run_id, {})
        run_params = params_by_run.get(run_id, {})
        run_metrics = metrics_by_run.get(run_id, {})
        lines.append(
            [
                run_id.hex,
                info["name"],
                run_tags.get(SOURCE_TYPE_TAG, ""),
                run_tags.get(SOURCE_NAME_TAG, ""),
                info["user_id"] or run_tags.get(USER_TAG, ""),
                info["status"],
                *(run_params.get(key, "") for key in param_keys),
                *(run_metrics.get(key, "") for key in metric_keys),
            ]
        )
    return lines


async def runs_csv(
    pool: asyncpg.Pool | ReadRouter,
    *,
    experiment_ids: list[int],
    filter_string: str | None = None,
    run_view_type: str = "ACTIVE_ONLY",
    order_by: list[str] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> AsyncIterator[str]:
    """Stream the runs CSV: the header line, then one chunk of lines per page of runs.

    The search is compiled before anything is read, so a bad filter raises
    before the first chunk (callers can still answer with an error).

    Args:
        pool: the database pool, or a read router (the export then reads from a replica
            that has caught up with the primary); one connection is held until the iterator finishes.
        experiment_ids: the experiments whose runs are exported.
        filter_string: MLflow's filter syntax (with MIN/MAX/LATEST); None for every run.
        run_view_type: ACTIVE_ONLY, DELETED_ONLY or ALL.
        order_by: MLflow's order_by clauses; None for runs/search's default order.
        page_size: runs read per query.

    Yields:
        CSV text (RFC 4180 quoting, CRLF line ends), header first.

    Raises:
        InvalidParameter: a bad filter, order_by or view type (MLflow's messages).
        TransientStoreError: the database became unreachable.
    """
    matching = search.compile_run_filter(
        experiment_ids=experiment_ids, filter_string=filter_string, run_view_type=run_view_type
    )
    page = search.compile_run_search(
        experiment_ids=experiment_ids,
        filter_string=filter_string,
        run_view_type=run_view_type,
        order_by=order_by,
        max_results=page_size,
        page_token=None,
    )
    async with transaction(pool, isolation="repeatable_read", readonly=True) as conn:
        await conn.execute(searching.PLANNER_SETTINGS)
        param_keys = await _keys(conn, "params", matching)
        metric_keys = await _keys(conn, "metric_summaries", matching)
        yield _csv_line([*FIXED_COLUMNS, *param_keys, *metric_keys])
        while True:
            rows = await searching.fetch_page(conn, page)
            run_ids = [row["run_id"] for row in rows[:page_size]]
            if run_ids:
                lines = await _page_rows(conn, run_ids, param_keys, metric_keys)
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\r\n").writerows(lines)
                yield buffer.getvalue()
            token = search.next_run_page_token(page, rows, page_size)
            if token is None:
                return
            page = search.compile_run_search(
                experiment_ids=experiment_ids,
                filter_string=filter_string,
                run_view_type=run_view_type,
                order_by=order_by,
                max_results=page_size,
                page_token=token,
            )


async def write_runs_csv(database_url: str, out: io.TextIOBase, **search_args) -> int:
    """Write the runs CSV of a search to a text stream, reading the database directly.

    Args:
        database_url: the gateway's PostgreSQL.
        out: where the CSV goes (opened with ``newline=""``).
        search_args: as for :func:`runs_csv` (experiment_ids, filter_string,
            run_view_type, order_by).

    Returns:
        The number of runs written.

    Raises:
        InvalidParameter: a bad filter, order_by or view type.
    """
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    runs = 0
    try:
        header_seen = False
        async for chunk in runs_csv(pool, **search_args):
            out.write(chunk)
            if header_seen:
                runs += _count_records(chunk)
            header_seen = True
    finally:
        await pool.close()
    return runs


def _count_records(chunk: str) -> int:
    # Quoted values may hold newlines, so count records by parsing, not by lines.
    return sum(1 for _ in csv.reader(io.StringIO(chunk, newline="")))
