"""loadtest/request_path.py: the gateway whose flushes send no statement, driven by bench.py --no-verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.pg import run_apart
from tests.server import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]


def test_a_flood_is_answered_and_nothing_of_it_is_stored(fresh_database_url, tmp_path):
    server = GatewayProcess(
        fresh_database_url, "--workers", "2", program=(str(ROOT / "loadtest" / "request_path.py"),)
    )
    report = tmp_path / "bench.json"
    try:
        bench = subprocess.run(
            [sys.executable, str(ROOT / "loadtest" / "bench.py"), "--url", server.url,
             "--scenario", "log-batch-c16", "--duration", "3", "--max-requests", "200", "--no-verify",
             "--json", str(report)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        server.stop()
    assert bench.returncode == 0, bench.stdout + bench.stderr
    (result,) = json.loads(report.read_text())["scenarios"]
    assert result["requests_ok"] > 0 and result["requests_failed"] == 0
    assert result["verification"]["skipped"] and "not verified" in bench.stdout

    async def stored() -> tuple[int, int]:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM runs"), await conn.fetchval(
                "SELECT count(*) FROM metric_chunks"
            )
        finally:
            await conn.close()

    runs, chunks = run_apart(stored())
    # The run was made in the database; the points the flood was answered for were not
    # written by either worker (the second is a spawned process that imports the file again).
    assert runs == 1 and chunks == 0
