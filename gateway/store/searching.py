"""Running a compiled search (gateway.search) on a connection."""

from __future__ import annotations

import asyncpg

from gateway.search import CompiledQuery

# asyncpg prepares every statement, and after five runs PostgreSQL may switch a
# prepared statement to a generic plan that ignores how selective the values
# are (a filter on a rare param planned like one on a common one). Searches
# run in their own transaction with this set, so each is planned for its values.
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


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
