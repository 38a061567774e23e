#!/usr/bin/env python3
"""Metric chunks under a flood: what the compactor costs the flood, and what a point takes on disk.

Each round starts ``gateway serve`` twice on a fresh database of the given
PostgreSQL, once with the background compactor on (``--compact-interval-s 1``)
and once with it off (``--compact-interval-s 0``), in alternating order, and
drives the same ``bench.py`` scenario at each (default log-batch-c16). After the
flood with the compactor off, the bytes a point takes in ``metric_chunks``
(table, indexes and TOAST, after a plain VACUUM) are measured, then ``gateway
compact`` runs and they are measured again (after VACUUM FULL, which gives back
what the merged small chunks held). The medians over the rounds are printed.

    python loadtest/chunk_bench.py --pg-host /tmp/bench-pg --rounds 3 --workers 2

Every server listens on 127.0.0.1 and is stopped before the next starts; every
database made here is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
PORT = 5097


def url_of(pg_host: str, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={pg_host}"


async def sql(pg_host: str, database: str, statement: str, *args):
    conn = await asyncpg.connect(url_of(pg_host, database))
    try:
        return await conn.fetchval(statement, *args)
    finally:
        await conn.close()


def wait_ready(process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gateway exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("gateway did not answer in time")


async def bytes_per_point(pg_host: str, database: str, full: bool) -> dict:
    conn = await asyncpg.connect(url_of(pg_host, database))
    try:
        await conn.execute("VACUUM FULL metric_chunks" if full else "VACUUM metric_chunks")
        points = await conn.fetchval("SELECT coalesce(sum(point_count), 0) FROM metric_chunks")
        size = await conn.fetchval("SELECT pg_total_relation_size('metric_chunks')")
        chunks = await conn.fetchval("SELECT count(*) FROM metric_chunks")
        return {"points": points, "chunks": chunks, "bytes": size, "bytes_per_point": round(size / max(points, 1), 2)}
    finally:
        await conn.close()


def flood(args: argparse.Namespace, database: str, compact: bool, folder: Path) -> dict:
    """One gateway on a fresh database, one bench.py scenario; the report of bench.py."""
    asyncio.run(sql(args.pg_host, "postgres", f"DROP DATABASE IF EXISTS {database}"))
    asyncio.run(sql(args.pg_host, "postgres", f"CREATE DATABASE {database}"))
    report_path = folder / f"{database}.json"
    with open(folder / f"{database}.log", "w") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(PORT),
             "--workers", str(args.workers), "--database-url", url_of(args.pg_host, database),
             "--artifacts-destination", str(folder / "artifacts"),
             "--compact-interval-s", "1" if compact else "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_ready(gateway)
            subprocess.run(
                [sys.executable, str(HERE / "bench.py"), "--url", f"http://127.0.0.1:{PORT}", "--scenario",
                 args.scenario, "--duration", str(args.duration), "--warmup", str(args.warmup),
                 "--json", str(report_path)],
                check=True, timeout=30 * 60,
            )
        finally:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(timeout=120)
    with open(report_path) as f:
        return json.load(f)["scenarios"][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-host", required=True, help="the PostgreSQL unix socket directory (user postgres)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scenario", default="log-batch-c16")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None, help="write every round's figures here")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="chunk-bench-"))
    rates: dict[bool, list[float]] = {True: [], False: []}
    storage: list[dict] = []
    databases = []
    try:
        for round_no in range(1, args.rounds + 1):
            order = (True, False) if round_no % 2 else (False, True)
            for compact in order:
                database = f"chunk_bench_{'on' if compact else 'off'}_{round_no}"
                databases.append(database)
                result = flood(args, database, compact, folder)
                rate = result.get("points_per_s") or result["requests_per_s"]
                rates[compact].append(rate)
                print(f"round {round_no}, compactor {'on ' if compact else 'off'}: {rate:,.0f}/s", flush=True)
                if not compact:
                    before = asyncio.run(bytes_per_point(args.pg_host, database, full=False))
                    done = subprocess.run(
                        [sys.executable, "-m", "gateway", "compact", "--database-url", url_of(args.pg_host, database)],
                        capture_output=True, text=True, check=True, timeout=30 * 60,
                    )
                    after = asyncio.run(bytes_per_point(args.pg_host, database, full=True))
                    storage.append({"before": before, "after": after, "compact": done.stdout.strip()})
                    print(f"  bytes/point before compaction {before['bytes_per_point']} "
                          f"({before['chunks']:,} chunks), after {after['bytes_per_point']} "
                          f"({after['chunks']:,} chunks); {done.stdout.strip()}", flush=True)
                asyncio.run(sql(args.pg_host, "postgres", f"DROP DATABASE IF EXISTS {database}"))
    finally:
        for database in databases:
            asyncio.run(sql(args.pg_host, "postgres", f"DROP DATABASE IF EXISTS {database}"))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"\n{args.scenario}, {args.workers} worker(s), median of {args.rounds}: compactor on {on:,.0f}/s, "
          f"off {off:,.0f}/s ({(on / off - 1) * 100:+.1f} %)")
    print("bytes/point before compaction (median): "
          f"{statistics.median(s['before']['bytes_per_point'] for s in storage)}, after: "
          f"{statistics.median(s['after']['bytes_per_point'] for s in storage)}")
    if args.json:
        args.json.write_text(json.dumps({"rates": {"on": rates[True], "off": rates[False]}, "storage": storage},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
