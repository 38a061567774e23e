"""runs/export-csv: the runs CSV of one or more experiments, streamed.

GET (query string) or POST (JSON body) with runs/search's fields:
``experiment_ids`` (required, repeated), ``filter``, ``order_by`` (repeated)
and ``run_view_type``. The answer is ``text/csv`` in chunked pages; see
:mod:`gateway.store.export` for the columns.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.api import schemas
from gateway.api.openapi import operation
from gateway.api.routing import Route, under
from gateway.api.decoding import enum_name, optional_str, read, required_str
from gateway.api.state import STORE, WRITES
from gateway.mlflow import messages, searches
from gateway.mlflow.wire import TRACKING_PREFIXES, VIEW_TYPES

log = logging.getLogger(__name__)

CSV_FILENAME = "runs.csv"


@operation(
    schemas.SearchRuns,
    None,
    summary="The runs CSV (Databricks' Download CSV) of experiments, with an optional filter, streamed.",
    content_type="text/csv",
)
async def export_runs_csv(request: web.Request) -> web.StreamResponse:
    message = await read(request, schemas.SearchRuns)
    if not message.experiment_ids:
        raise messages.missing_value("experiment_ids")
    experiment_ids = [int(searches.experiment_id_field(e)) for e in message.experiment_ids]
    order_by = [required_str(o, "order_by") for o in message.order_by or ()]
    view = enum_name(message.run_view_type, VIEW_TYPES, "run_view_type", "ACTIVE_ONLY")
    await request.app[WRITES].settle_all()
    chunks = request.app[STORE].runs_csv(
        experiment_ids=experiment_ids,
        filter_string=optional_str(message.filter, "filter") or None,
        run_view_type=view,
        order_by=order_by,
    )
    try:
        # A bad filter or an unreachable database fails here, before the status is sent.
        header = await anext(chunks)
    except BaseException:
        await chunks.aclose()
        raise
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{CSV_FILENAME}"',
        }
    )
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        await response.write(header.encode())
        async for chunk in chunks:
            await response.write(chunk.encode())
    except Exception:
        # The status is already sent: cut the connection so the client sees an
        # incomplete download rather than a file that looks whole.
        log.exception("runs CSV export failed mid-stream")
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await chunks.aclose()
    await response.write_eof()
    return response


ROUTES = under(
    TRACKING_PREFIXES,
    [Route("GET", "/runs/export-csv", export_runs_csv), Route("POST", "/runs/export-csv", export_runs_csv)],
)
