#!/usr/bin/env python3
"""Bulk delete and restore of many runs, one call each, against any MLflow-compatible server.

Creates ``--runs`` runs in a new experiment through ``runs/create`` (concurrent
calls), then times, ``--rounds`` times, one Databricks ``databricks/runs/delete-runs``
call that deletes them all and one ``databricks/runs/restore-runs`` call that
restores them all, checking each answer's count and, at the end, that every run
is active again.

    python loadtest/bulk_bench.py --url http://127.0.0.1:5000 --runs 10000 --rounds 3

A server without the bulk endpoints (a stock ``mlflow server`` answers them with
404) is reported as such. With ``--per-run-fallback`` the same work is then timed
the way its users have to do it: one ``runs/delete`` (then ``runs/restore``) call
per run, ``--concurrency`` at a time.

``--points-per-run N`` logs N metric points to each run as it is created (to
give ``gateway gc`` something to remove); ``--rounds 0`` only creates the runs.

Exit status: 0 when every count matched, 1 when one did not, 2 when the benchmark
could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid

import aiohttp

API_PREFIX = "/api/2.0/mlflow"
START_TIME_BASE = 1_700_000_000_000
MAX_RUNS_PER_CALL = 10_000


class BenchError(Exception):
    """The server answered something the benchmark cannot go on from."""


async def call(session: aiohttp.ClientSession, url: str, path: str, body: dict) -> tuple[int, dict]:
    async with session.post(url + API_PREFIX + path, json=body) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text) if text else {}
        except ValueError:
            return response.status, {"raw": text[:200]}


def metric_batches(points_per_run: int) -> list[list[dict]]:
    """The run's metric points as log-batch bodies of at most 1000 (key ``loss``, one step each)."""
    points = [{"key": "loss", "value": step / 16, "timestamp": START_TIME_BASE + step, "step": step}
              for step in range(points_per_run)]
    return [points[i:i + 1000] for i in range(0, len(points), 1000)]


async def create_runs(
    session: aiohttp.ClientSession, url: str, count: int, concurrency: int, points_per_run: int = 0
) -> tuple[str, list[str]]:
    status, body = await call(session, url, "/experiments/create", {"name": "bulk-bench-" + uuid.uuid4().hex})
    if status != 200:
        raise BenchError(f"experiments/create answered {status}: {body}")
    experiment_id = body["experiment_id"]
    run_ids: list[str | None] = [None] * count
    next_index = 0
    batches = metric_batches(points_per_run)

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            status, body = await call(
                session, url, "/runs/create", {"experiment_id": experiment_id, "start_time": START_TIME_BASE + index}
            )
            if status != 200:
                raise BenchError(f"runs/create answered {status}: {body}")
            run_ids[index] = body["run"]["info"]["run_id"]
            for metrics in batches:
                status, body = await call(session, url, "/runs/log-batch", {"run_id": run_ids[index], "metrics": metrics})
                if status != 200:
                    raise BenchError(f"runs/log-batch answered {status}: {body}")

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return experiment_id, [r for r in run_ids if r is not None]


async def per_run(session, url: str, path: str, run_ids: list[str], concurrency: int) -> None:
    queue = list(run_ids)

    async def worker() -> None:
        while queue:
            run_id = queue.pop()
            status, body = await call(session, url, path, {"run_id": run_id})
            if status != 200:
                raise BenchError(f"{path} answered {status}: {body}")

    await asyncio.gather(*[worker() for _ in range(concurrency)])


async def count_active(session, url: str, experiment_id: str) -> int:
    total, token = 0, None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 10000}
        if token:
            body["page_token"] = token
        status, page = await call(session, url, "/runs/search", body)
        if status != 200:
            raise BenchError(f"runs/search answered {status}: {page}")
        total += len(page.get("runs", []))
        token = page.get("next_page_token")
        if not token:
            return total


async def bench(args: argparse.Namespace) -> dict:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=max(args.concurrency, 4))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.perf_counter()
        experiment_id, run_ids = await create_runs(
            session, args.url, args.runs, args.concurrency, args.points_per_run
        )
        create_s = time.perf_counter() - started
        print(f"created {len(run_ids)} runs in {create_s:.1f} s ({len(run_ids) / create_s:.0f} runs/s)", file=sys.stderr)
        result: dict = {
            "url": args.url,
            "experiment_id": experiment_id,
            "runs": len(run_ids),
            "points_per_run": args.points_per_run,
            "create_seconds": create_s,
            "mismatches": [],
        }
        if args.rounds == 0:
            return result

        probe_status, probe = await call(
            session, args.url, "/databricks/runs/restore-runs",
            {"experiment_id": experiment_id, "min_timestamp_millis": 0, "max_runs": 1},
        )
        result["bulk_endpoints"] = probe_status == 200
        if probe_status != 200:
            print(f"databricks/runs/restore-runs answered {probe_status}: {probe}", file=sys.stderr)
            if not args.per_run_fallback:
                return result

        deletes, restores = [], []
        for round_number in range(1, args.rounds + 1):
            if result["bulk_endpoints"]:
                started = time.perf_counter()
                status, body = await call(session, args.url, "/databricks/runs/delete-runs", {
                    "experiment_id": experiment_id,
                    "max_timestamp_millis": START_TIME_BASE + len(run_ids),
                    "max_runs": min(len(run_ids), MAX_RUNS_PER_CALL),
                })
                deletes.append(time.perf_counter() - started)
                if status != 200 or body.get("runs_deleted") != len(run_ids):
                    result["mismatches"].append(f"round {round_number} delete-runs: {status} {body}")
                started = time.perf_counter()
                status, body = await call(session, args.url, "/databricks/runs/restore-runs", {
                    "experiment_id": experiment_id, "min_timestamp_millis": 0,
                    "max_runs": min(len(run_ids), MAX_RUNS_PER_CALL),
                })
                restores.append(time.perf_counter() - started)
                if status != 200 or body.get("runs_restored") != len(run_ids):
                    result["mismatches"].append(f"round {round_number} restore-runs: {status} {body}")
            else:
                started = time.perf_counter()
                await per_run(session, args.url, "/runs/delete", run_ids, args.concurrency)
                deletes.append(time.perf_counter() - started)
                started = time.perf_counter()
                await per_run(session, args.url, "/runs/restore", run_ids, args.concurrency)
                restores.append(time.perf_counter() - started)
            print(f"round {round_number}: delete {deletes[-1]:.3f} s, restore {restores[-1]:.3f} s", file=sys.stderr)

        active = await count_active(session, args.url, experiment_id)
        if active != len(run_ids):
            result["mismatches"].append(f"{active} of {len(run_ids)} runs active at the end")
        result.update(
            mode="bulk" if result["bulk_endpoints"] else f"per-run (concurrency {args.concurrency})",
            delete_seconds=deletes,
            restore_seconds=restores,
            delete_median=statistics.median(deletes),
            restore_median=statistics.median(restores),
        )
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:5000")
    parser.add_argument("--runs", type=int, default=10_000, help="runs to create (at most 10000 per bulk call)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="delete + restore rounds; medians are reported (0: only create the runs)")
    parser.add_argument("--points-per-run", type=int, default=0,
                        help="metric points logged to each run at creation (runs/log-batch of up to 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent runs/create (and per-run) calls")
    parser.add_argument("--per-run-fallback", action="store_true",
                        help="without bulk endpoints, time one runs/delete and runs/restore call per run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds any one call may take")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if not 1 <= args.runs <= MAX_RUNS_PER_CALL:
        parser.error(f"--runs must be between 1 and {MAX_RUNS_PER_CALL}")
    try:
        result = asyncio.run(bench(args))
    except (BenchError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        print(f"bulk_bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 1 if result["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
