#!/usr/bin/env python3
"""Streams a large generated file up to and back down from an artifact proxy.

Starts ``gateway serve`` with its embedded PostgreSQL and a local artifacts
destination in a temporary directory (or measures a running server with
``--url``), PUTs ``--size-mb`` of generated data to
``/api/2.0/mlflow-artifacts/artifacts/...`` with a Content-Length, as the stock
client does, GETs it back, and compares SHA-256 checksums. The data is made one
1 MiB block at a time and never held whole in memory on either side. The
server's resident memory is sampled every 50 ms during each transfer; with a
gateway this script started, its kernel-recorded peak (VmHWM) is reported too.

    python loadtest/artifact_bench.py --size-mb 1024 --rounds 3

Exit status: 0 when every round's download matched its upload, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil

BLOCK = 1024 * 1024


def generated_blocks(size_mb: int):
    """Deterministic, distinct 1 MiB blocks (a counter-seeded digest repeated), made on the fly."""
    for index in range(size_mb):
        seed = hashlib.sha256(index.to_bytes(8, "little")).digest()
        yield seed * (BLOCK // len(seed))


class RssSampler:
    """Polls a process tree's resident memory in a thread and keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def vm_hwm_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def upload(host: str, port: int, path: str, size_mb: int) -> tuple[float, str]:
    digest = hashlib.sha256()
    connection = http.client.HTTPConnection(host, port, timeout=600)
    started = time.perf_counter()
    connection.putrequest("PUT", path)
    connection.putheader("Content-Length", str(size_mb * BLOCK))
    connection.putheader("Content-Type", "application/octet-stream")
    connection.endheaders()
    for block in generated_blocks(size_mb):
        digest.update(block)
        connection.send(block)
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"upload failed: {response.status} {body[:200]!r}")
    return elapsed, digest.hexdigest()


def download(host: str, port: int, path: str) -> tuple[float, str, int]:
    digest = hashlib.sha256()
    connection = http.client.HTTPConnection(host, port, timeout=600)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"download failed: {response.status} {response.read()[:200]!r}")
    received = 0
    while chunk := response.read(BLOCK):
        digest.update(chunk)
        received += len(chunk)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed, digest.hexdigest(), received


def start_gateway(workdir: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(workdir / "data"), "--artifacts-destination", str(workdir / "artifacts"),
    ]
    log = open(workdir / "gateway.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {(workdir / 'gateway.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("gateway did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="upload+download rounds (default 3)")
    parser.add_argument("--url", help="measure this running server instead of starting a gateway")
    parser.add_argument("--server-pid", type=int, help="with --url: the server process to sample")
    parser.add_argument("--port", type=int, default=5077, help="port of the gateway this script starts")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="artifact-bench-"))
    process = None
    if args.url:
        parts = urlsplit(args.url)
        host, port, pid = parts.hostname, parts.port or 80, args.server_pid
    else:
        host, port = "127.0.0.1", args.port
        process = start_gateway(workdir, port)
        pid = process.pid
    try:
        baseline = psutil.Process(pid).memory_info().rss if pid else None
        rounds = []
        ok = True
        for round_index in range(args.rounds):
            path = f"/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/bench.bin"
            with RssSampler(pid) if pid else _Null() as up_sampler:
                up_seconds, sent_hash = upload(host, port, path, args.size_mb)
            with RssSampler(pid) if pid else _Null() as down_sampler:
                down_seconds, got_hash, received = download(host, port, path)
            match = sent_hash == got_hash and received == args.size_mb * BLOCK
            ok &= match
            result = {
                "round": round_index + 1,
                "upload_mb_s": args.size_mb / up_seconds,
                "download_mb_s": args.size_mb / down_seconds,
                "upload_peak_rss_mb": getattr(up_sampler, "peak", 0) / 2**20,
                "download_peak_rss_mb": getattr(down_sampler, "peak", 0) / 2**20,
                "checksum_match": match,
            }
            rounds.append(result)
            print(json.dumps(result), flush=True)
            if process is not None:
                # Keep the disk from filling with benchmark copies.
                for stored in (workdir / "artifacts").rglob("bench.bin"):
                    stored.unlink()
        summary = {
            "size_mb": args.size_mb,
            "rounds": len(rounds),
            "median_upload_mb_s": statistics.median(r["upload_mb_s"] for r in rounds),
            "median_download_mb_s": statistics.median(r["download_mb_s"] for r in rounds),
            "baseline_rss_mb": baseline / 2**20 if baseline else None,
            "max_sampled_rss_mb": max(max(r["upload_peak_rss_mb"], r["download_peak_rss_mb"]) for r in rounds),
            "vm_hwm_mb": (vm_hwm_bytes(pid) or 0) / 2**20 if pid else None,
            "all_checksums_match": ok,
        }
        print(json.dumps(summary, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2))
        return 0 if ok else 1
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
        shutil.rmtree(workdir, ignore_errors=True)


class _Null:
    peak = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    sys.exit(main())
