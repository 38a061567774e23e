#!/usr/bin/env python3
"""What a log-batch point costs the gateway's own code, step by step, in one process.

The bodies are bench.py's log-batch-c16 bodies (10 keys x 100 steps a request, one
run), grouped as a flush takes them (``--requests-per-flush``), in the order they
arrive (the later half of each flush's requests shuffled, as concurrent clients
deliver them). Each step is timed on its own, as CPU time of this process per point:

- decode: the body into the plain log-batch struct (msgspec);
- columns: the struct into the write's columns per key (MLflow's checks left);
- flush compute: a flush's chunk rows, summaries and COPY data, no I/O;
- writer: the whole flush with the real BatchWriter against PostgreSQL
  (the flush compute, the statements and the COPY; the server's CPU not counted).

HTTP, the event loop's scheduling of requests and the server's other work are not
in these figures: bench.py's ``--cpu-of`` gives the whole process under a flood.

    python loadtest/point_cost.py --pg-host /tmp/bench-pg [--requests-per-flush 8] [--flushes 200]

Run it with ``PYTHONPATH`` set to another checkout to measure that one. The
database it writes to is made for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # this checkout's gateway, unless PYTHONPATH names another
from bench import LogBatchWorkload  # noqa: E402

from gateway.api import decoding, schemas  # noqa: E402
from gateway.store import pgcopy  # noqa: E402
from gateway.store import points as chunked  # noqa: E402
from gateway.store.migrations import migrate  # noqa: E402
from gateway.store.tracking import TrackingStore  # noqa: E402
from gateway.store.writer import BatchWriter  # noqa: E402


def arrival_order(bodies: list[bytes], per_flush: int, seed: int) -> list[list[bytes]]:
    """The bodies in flushes of ``per_flush``, the later half of each shuffled."""
    shuffle = random.Random(seed).shuffle
    flushes = []
    for start in range(0, len(bodies) - per_flush + 1, per_flush):
        group = bodies[start:start + per_flush]
        later = group[per_flush // 2:]
        shuffle(later)
        flushes.append(group[: per_flush // 2] + later)
    return flushes


def flush_compute(writes) -> bytes:
    batches = chunked.batch_by_key(writes)
    rows = [row for key in sorted(batches) for row in batches[key].rows]
    return pgcopy.chunk_tuples(rows, range(len(rows)))


async def measure(args: argparse.Namespace) -> dict[str, float]:
    admin_url = f"postgresql://postgres@/postgres?host={args.pg_host}"
    database = f"point_cost_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"CREATE DATABASE {database}")
    try:
        pool = await asyncpg.create_pool(f"postgresql://postgres@/{database}?host={args.pg_host}", min_size=1,
                                         max_size=2)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            store = TrackingStore(pool)
            experiment_id = await store.create_experiment("point-cost", None, [])
            run = await store.create_run(experiment_id=experiment_id, user_id="bench", run_name="point-cost",
                                         start_time=None, tags=[])
            workload = LogBatchWorkload([run.info.run_id])
            per_flush = args.requests_per_flush
            # One more round than measured: the first warms the caches and the statements.
            bodies = [workload.next_body(0)[0] for _ in range(per_flush * args.flushes * (args.rounds + 1))]
            flushes = arrival_order(bodies, per_flush, args.seed)
            decoder = schemas.decoder(schemas.PlainLogBatch)
            writer = BatchWriter(pool)
            figures: dict[str, list[float]] = {"decode": [], "columns": [], "flush compute": [], "writer": []}
            for round_ in range(args.rounds + 1):
                part = flushes[round_ * args.flushes:(round_ + 1) * args.flushes]
                points = sum(len(group) for group in part) * workload.points_per_request
                spent = dict.fromkeys(figures, 0.0)
                # A flush at a time, as the server holds them: the steps' data stays in the caches it would.
                for group in part:
                    started = time.process_time()
                    messages = [decoder.decode(body) for body in group]
                    decoded = time.process_time()
                    writes = [decoding.log_batch_write(message, None) for message in messages]
                    grouped = time.process_time()
                    flush_compute(writes)
                    computed = time.process_time()
                    outcomes = await writer.write_batch(writes)
                    written = time.process_time()
                    if any(outcomes):
                        raise RuntimeError(f"a flush was refused: {outcomes}")
                    spent["decode"] += decoded - started
                    spent["columns"] += grouped - decoded
                    spent["flush compute"] += computed - grouped
                    spent["writer"] += written - computed
                if round_:
                    for name, seconds in spent.items():
                        figures[name].append(1e6 * seconds / points)
            return {name: round(statistics.median(values), 3) for name, values in figures.items()}
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database}")
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-host", required=True, help="the PostgreSQL unix socket directory")
    parser.add_argument("--requests-per-flush", type=int, default=8, help="log-batch requests a flush (default 8)")
    parser.add_argument("--flushes", type=int, default=100, help="flushes a round (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds; the median is given (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if args.requests_per_flush < 1 or args.flushes < 1 or args.rounds < 1:
        parser.error("--requests-per-flush, --flushes and --rounds must be at least 1")
    figures = asyncio.run(measure(args))
    print("| step | CPU a point, µs (median of rounds) |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value:.3f} |")
    print(f"| decode + columns + writer | {figures['decode'] + figures['columns'] + figures['writer']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
