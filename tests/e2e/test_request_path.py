"""loadtest/request_path.py: the gateway whose flushes send no statement, driven by bench.py --no-verify."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg

from tests.pg import run_apart
from tests.server import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


def test_a_flood_is_answered_and_nothing_of_it_is_stored(fresh_database_url, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "loadtest" / "request_path.py"), "serve",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--database-url", fresh_database_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    report = tmp_path / "bench.json"
    try:
        _wait_ready(port, server)
        bench = subprocess.run(
            [sys.executable, str(ROOT / "loadtest" / "bench.py"), "--url", f"http://127.0.0.1:{port}",
             "--scenario", "log-batch-c16", "--duration", "3", "--max-requests", "200", "--no-verify",
             "--json", str(report)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        stop_process(server)
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


def _wait_ready(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"request_path.py exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
