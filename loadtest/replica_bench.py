"""Reads with and without a streaming replica: the same gateway, on one PostgreSQL 15 primary alone
and on that primary plus a streaming replica of it (``--read-database-url``).

Makes a primary and a replica of Debian's PostgreSQL 15 (``initdb``, ``pg_basebackup -R``, as
tests/replication.py does), loads N runs into the primary with COPY as search_bench.py loads
them (20 metric keys, 10 params, 3 tags each), waits for the replica to replay them, then in each
round starts the gateway once per set-up, in turns, and measures:

- latency: p50 of runs/search (max_results 100) for search_bench's queries and of runs/get,
  one call at a time (``--repetitions`` calls each, the first not counted);
- throughput: searches answered per second by ``--clients`` concurrent clients over
  ``--seconds`` seconds (the "combined" query and runs/get alternating);
- the same throughput while a writer floods log-batch calls (``--write-clients``), the case
  replicas are for: reads beside a write flood.

Every set-up's figures are medians over ``--rounds`` rounds. The gateway's /metrics show
how many reads the replica served and how long they waited for it to catch up.

    python loadtest/replica_bench.py --runs 20000 --rounds 3 --json loadtest/results/replicas.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "loadtest"))

from search_bench import EXPERIMENT_ID, QUERIES, DataSet, Server, free_port, load_gateway, percentile  # noqa: E402

from tests.replication import StreamingPair  # noqa: E402

LATENCY_QUERIES = ["default order", "metric", "param", "combined"]


def start_gateway(primary_url: str, replica_url: str | None, folder: Path, name: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database-url", primary_url, "--compact-interval-s", "0"]
    if replica_url:
        command += ["--read-database-url", replica_url]
    return Server(name, command, f"http://127.0.0.1:{port}", folder / f"{name}.log")


async def wait_replayed(primary_url: str, replica_url: str) -> None:
    primary = await asyncpg.connect(primary_url)
    replica = await asyncpg.connect(replica_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        while await replica.fetchval("SELECT pg_last_wal_replay_lsn()") < target:
            await asyncio.sleep(0.2)
    finally:
        await primary.close()
        await replica.close()


async def call(session: aiohttp.ClientSession, url: str, kind: str, run_id: str) -> None:
    if kind == "get run":
        request = session.get(url + "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    else:
        filter_string, order_by, _ = QUERIES[kind]
        body = {"experiment_ids": [str(EXPERIMENT_ID)], "max_results": 100, "order_by": order_by}
        if filter_string:
            body["filter"] = filter_string
        request = session.post(url + "/api/2.0/mlflow/runs/search", json=body)
    async with request as response:
        raw = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{kind}: {response.status} {raw[:300]!r}")


async def latencies(url: str, run_ids: list[str], repetitions: int) -> dict[str, float]:
    found = {}
    async with aiohttp.ClientSession() as session:
        for kind in [*LATENCY_QUERIES, "get run"]:
            times = []
            for index in range(repetitions + 1):
                started = time.perf_counter()
                await call(session, url, kind, run_ids[index % len(run_ids)])
                if index:
                    times.append((time.perf_counter() - started) * 1000)
            found[kind] = percentile(times, 0.5)
    return found


async def throughput(url: str, run_ids: list[str], clients: int, seconds: float, write_clients: int) -> dict:
    """Reads per second by ``clients`` readers, while ``write_clients`` writers flood log-batch."""
    stop = time.monotonic() + seconds
    done = {"reads": 0, "points": 0}

    async def reader(session: aiohttp.ClientSession, number: int) -> None:
        turn = number
        while time.monotonic() < stop:
            kind = "combined" if turn % 2 else "get run"
            await call(session, url, kind, run_ids[turn % len(run_ids)])
            done["reads"] += 1
            turn += 1

    async def writer(session: aiohttp.ClientSession) -> None:
        async with session.post(url + "/api/2.0/mlflow/runs/create",
                                json={"experiment_id": str(EXPERIMENT_ID)}) as response:
            run_id = (await response.json())["run"]["info"]["run_id"]
        step = 0
        while time.monotonic() < stop:
            metrics = [{"key": f"w{k}", "value": float(step), "timestamp": 1, "step": step + i}
                       for i in range(100) for k in range(10)]
            async with session.post(url + "/api/2.0/mlflow/runs/log-batch",
                                    json={"run_id": run_id, "metrics": metrics}) as response:
                if response.status != 200:
                    raise RuntimeError(f"log-batch: {response.status}")
            done["points"] += len(metrics)
            step += 100

    connector = aiohttp.TCPConnector(limit=clients + write_clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(reader(session, n) for n in range(clients)),
                             *(writer(session) for _ in range(write_clients)))
        elapsed = time.monotonic() - started
    return {"reads_per_s": done["reads"] / elapsed, "points_per_s": done["points"] / elapsed}


def difference(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Counters of ``now`` less ``before``, with the mean wait of the reads in between."""
    counts = {name: value - before.get(name, 0.0) for name, value in now.items()}
    if counts.get("gateway_replica_wait_seconds_count"):
        counts["mean_wait_ms"] = (
            1000 * counts["gateway_replica_wait_seconds_sum"] / counts["gateway_replica_wait_seconds_count"]
        )
    return counts


async def read_counts(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    counts = {}
    for line in text.splitlines():
        if line.startswith("gateway_reads_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels[len("gateway_reads_total"):]] = float(value)
        elif line.startswith(("gateway_replica_wait_seconds_sum ", "gateway_replica_wait_seconds_count ")):
            name, value = line.rsplit(" ", 1)
            counts[name] = float(value)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=30, help="timed calls per query per round")
    parser.add_argument("--clients", type=int, default=8, help="concurrent readers")
    parser.add_argument("--seconds", type=float, default=10, help="length of each throughput measurement")
    parser.add_argument("--write-clients", type=int, default=4, help="log-batch writers beside the readers")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()

    pair = StreamingPair()
    folder = Path(tempfile.mkdtemp(prefix="replica-bench-"))
    try:
        data = DataSet(args.runs, 20, 10)
        loaded = asyncio.run(load_gateway(pair.primary_url, data))
        asyncio.run(wait_replayed(pair.primary_url, pair.replica_url))
        print(f"loaded {args.runs} runs in {loaded:.1f} s; replica caught up", flush=True)
        run_ids = [uuid.UUID(hex=r).hex for r in data.run_ids[:1000]]
        setups = {"primary only": None, "primary + replica": pair.replica_url}
        rounds: dict[str, list[dict]] = {name: [] for name in setups}
        for number in range(args.rounds):
            for name, replica_url in setups.items():
                server = start_gateway(pair.primary_url, replica_url, folder, name.replace(" ", "-"))
                try:
                    figures = {"latency_p50_ms": asyncio.run(latencies(server.url, run_ids, args.repetitions))}
                    counted = [asyncio.run(read_counts(server.url))]
                    figures["reads"] = asyncio.run(throughput(server.url, run_ids, args.clients, args.seconds, 0))
                    counted.append(asyncio.run(read_counts(server.url)))
                    figures["reads_beside_writes"] = asyncio.run(
                        throughput(server.url, run_ids, args.clients, args.seconds, args.write_clients)
                    )
                    counted.append(asyncio.run(read_counts(server.url)))
                    # Each phase's own counts: what its reads added to the gateway's counters.
                    figures["counts"] = {
                        phase: difference(now, before)
                        for phase, now, before in zip(("latency", "reads", "reads_beside_writes"),
                                                      counted, [{}, *counted[:-1]])
                    }
                finally:
                    server.stop()
                rounds[name].append(figures)
                print(f"round {number + 1} {name}: {json.dumps(figures)}", flush=True)
        summary = {}
        for name, figures in rounds.items():
            summary[name] = {
                "latency_p50_ms": {kind: statistics.median(f["latency_p50_ms"][kind] for f in figures)
                                   for kind in figures[0]["latency_p50_ms"]},
                "reads_per_s": statistics.median(f["reads"]["reads_per_s"] for f in figures),
                "reads_per_s_beside_writes": statistics.median(f["reads_beside_writes"]["reads_per_s"] for f in figures),
                "points_per_s_beside_reads": statistics.median(f["reads_beside_writes"]["points_per_s"] for f in figures),
            }
        print(json.dumps(summary, indent=2))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds, "summary": summary}, indent=2))
    finally:
        pair.close()


if __name__ == "__main__":
    main()
