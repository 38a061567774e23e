#!/usr/bin/env python3
"""The gateway without its flushes' statements: how fast its request path alone takes a flood.

Runs ``gateway serve`` (same arguments, same workers) with one change: a flush
makes everything it makes before its transaction (the points as chunk rows per
key, their summaries and the COPY data) and then answers its writers as
committed, without sending a statement. Everything else is the gateway's own:
HTTP, the middlewares, decoding and MLflow's checks, the accumulator and the
flusher; runs and experiments are still created in the database.

A flush that sends nothing ends at once, so it carries fewer writes than the
gateway's, whose flushes wait for PostgreSQL, and each point bears more of a
flush's own cost: the figures are those of the request path at its dearest.
(Making each flush wait as long as the gateway's do instead turns the flood into
one paced by those waits, with cores idle, which measures nothing of the CPU.)

What it stores is nothing, so it is for measuring only: with ``bench.py
--no-verify`` (the sitting's ``request-path-2`` server), the figures say how many
points a second the gateway's Python work and the driver leave room for on this
machine, and what a point costs the gateway before PostgreSQL and the flushes'
statements are counted.

    python loadtest/request_path.py serve --port 5099 --workers 2 --database-url postgresql://...
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# Run from a checkout: its gateway, unless PYTHONPATH names another.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from gateway import cli  # noqa: E402
from gateway.errors import GatewayError  # noqa: E402
from gateway.model import RunWrite  # noqa: E402
from gateway.store.writer import BatchWriter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from point_cost import flush_compute  # noqa: E402


async def computed_only(self: BatchWriter, writes: Sequence[RunWrite]) -> list[GatewayError | None]:
    """A flush's work before its transaction, and every write answered as committed."""
    flush_compute(writes)
    return [None] * len(writes)


# At import, not under __main__: the gateway's other workers are spawned processes,
# which import this file again before they serve.
BatchWriter.write_batch = computed_only  # type: ignore[method-assign]

if __name__ == "__main__":
    cli.main(sys.argv[1:])
