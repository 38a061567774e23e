"""Running a compiled search (gateway.search) on a connection."""

from __future__ import annotations

import asyncpg

from gateway.search import CompiledQuery

# Searches run in their own transaction with these set:
# - asyncpg prepares every statement, and after five runs PostgreSQL may switch
#   a prepared statement to a generic plan that ignores how selective the values
#   are (a filter on a rare param planned like one on a common one), so each
#   search is planned for its values;
# - without merge joins, which a page of a search has no use for (its joins are
#   index probes or hash joins), planning a filter on a metric, a param and a tag
#   ordered by two keys takes about 3.7 ms instead of 5.9 ms, a search's largest
#   cost after the reading;
# - without parallel workers: starting one cost about 10 ms on a 2-core host
#   (a 1000-run page of metrics.m1 > 0.8 over 100,000 runs: 42 ms with a worker,
#   28 ms without), and the workers compete with the gateway and other searches
#   for the same cores. Over the grammar benchmark's 47 searches the statements
#   took 906 ms in all without workers against 979 ms with them.
PLANNER_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_mergejoin = off; "
    "SET LOCAL max_parallel_workers_per_gather = 0"
)


async def fetch_page(conn: asyncpg.Connection, query: CompiledQuery) -> list[asyncpg.Record]:
    """The rows of one page: the query's own, then its follow-up statements' while the page is short.

    Returns:
        Up to ``query.row_limit`` rows in search order.
    """
    rows = await conn.fetch(query.sql, *query.args)
    part = query.then
    while part is not None and len(rows) < query.row_limit:
        rows.extend(await conn.fetch(part.sql, *part.args))
        part = part.then
    return rows[: query.row_limit]
