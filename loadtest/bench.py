#!/usr/bin/env python3
"""Write-flood benchmark for any MLflow-compatible tracking server.

Drives the MLflow REST API (``/api/2.0/mlflow/...``) from one asyncio process
(uvloop + aiohttp) and, after every scenario, reads back everything the server
acknowledged to check nothing was lost or doubled. The same command measures a
stock ``mlflow server`` and the ingestion gateway, so figures can be taken side
by side.

    python loadtest/bench.py --url http://127.0.0.1:5000 --duration 10 \
        --server-pid 1234 --json results/gateway.json

Scenarios (default: all, in this order):

    log-metric-c16/c64/c256  single runs/log-metric calls at that concurrency
    log-batch-c4/c16         runs/log-batch of 1000 points (10 keys x 100 steps)
    log-param-c64            runs/log-parameter, a new key on every call
    create-run-c16           runs/create, a new run on every call (a sweep starting)

Exit status: 0 when every scenario verified, 1 when any read-back found a
missing, doubled or altered point or param, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

import aiohttp
import msgspec

try:
    import uvloop
except ImportError:  # the driver still runs on the default loop, only slower
    uvloop = None

try:
    import psutil
except ImportError:
    psutil = None

API_PREFIX = "/api/2.0/mlflow"
JSON_HEADERS = {"Content-Type": "application/json"}

METRIC_KEYS = [f"metric_{i}" for i in range(10)]
# Metric values are step + i/16 for key i: sixteenths are exact in binary and in
# decimal, so a value survives any server's float formatting unchanged.
KEY_FRACTIONS = [i / 16 for i in range(len(METRIC_KEYS))]
# Steps per log-batch call. A power of ten keeps the body a fixed template (the
# step's text is the batch number followed by two digits); 10 keys x 100 steps
# is MLflow's limit of 1000 metrics per call.
BATCH_STEPS = 100
BATCH_POINTS = BATCH_STEPS * len(METRIC_KEYS)
WORKERS_PER_RUN = 16
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Scenario:
    """A named workload: which endpoint is flooded and by how many workers."""

    name: str
    kind: str  # "metric", "batch", "param" or "create"
    concurrency: int


SCENARIOS = [
    Scenario("log-metric-c16", "metric", 16),
    Scenario("log-metric-c64", "metric", 64),
    Scenario("log-metric-c256", "metric", 256),
    Scenario("log-batch-c4", "batch", 4),
    Scenario("log-batch-c16", "batch", 16),
    Scenario("log-param-c64", "param", 64),
    Scenario("create-run-c16", "create", 16),
]
SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}


# --- response shapes (only the fields the driver reads) ----------------------


class HistoryPoint(msgspec.Struct):
    key: str = ""
    value: float = 0.0
    timestamp: int = 0
    step: int = 0


class HistoryPage(msgspec.Struct):
    metrics: list[HistoryPoint] = []
    next_page_token: str = ""


class Param(msgspec.Struct):
    key: str
    value: str = ""


class RunData(msgspec.Struct):
    params: list[Param] = []
    tags: list[Param] = []


class RunInfo(msgspec.Struct):
    run_id: str = ""
    run_uuid: str = ""
    run_name: str = ""


class Run(msgspec.Struct):
    info: RunInfo
    data: RunData = msgspec.field(default_factory=RunData)


class RunResponse(msgspec.Struct):
    run: Run


class ExperimentCreated(msgspec.Struct):
    experiment_id: str


class RunsPage(msgspec.Struct):
    runs: list[Run] = []
    next_page_token: str = ""


# strict=False: protobuf JSON may render int64 fields as strings.
HISTORY_DECODER = msgspec.json.Decoder(HistoryPage, strict=False)
RUN_DECODER = msgspec.json.Decoder(RunResponse, strict=False)
EXPERIMENT_DECODER = msgspec.json.Decoder(ExperimentCreated, strict=False)
RUNS_PAGE_DECODER = msgspec.json.Decoder(RunsPage, strict=False)
ENCODER = msgspec.json.Encoder()


def now_ms() -> int:
    """Wall-clock time in milliseconds, as MLflow timestamps are."""
    return int(time.time() * 1000)


# --- MLflow REST client ------------------------------------------------------


class ApiError(Exception):
    """A setup or verification call answered with something other than 200."""


class MlflowClient:
    """The few REST calls the benchmark needs outside the flood itself."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.api = base_url.rstrip("/") + API_PREFIX

    async def _post(self, path: str, payload: dict[str, Any]) -> bytes:
        async with self.session.post(
            self.api + path, data=ENCODER.encode(payload), headers=JSON_HEADERS
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ApiError(f"POST {path}: HTTP {resp.status}: {body[:300]!r}")
            return body

    async def _get(self, path: str, params: dict[str, str]) -> bytes:
        async with self.session.get(self.api + path, params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ApiError(f"GET {path}: HTTP {resp.status}: {body[:300]!r}")
            return body

    async def create_experiment(self, name: str) -> str:
        """Create an experiment and return its id."""
        body = await self._post("/experiments/create", {"name": name})
        return EXPERIMENT_DECODER.decode(body).experiment_id

    async def create_run(self, experiment_id: str, run_name: str) -> str:
        """Create a run in the experiment and return its id."""
        body = await self._post(
            "/runs/create",
            {"experiment_id": experiment_id, "run_name": run_name, "start_time": now_ms()},
        )
        info = RUN_DECODER.decode(body).run.info
        return info.run_id or info.run_uuid

    async def get_run(self, run_id: str) -> Run:
        """Fetch a run with its data."""
        body = await self._get("/runs/get", {"run_id": run_id})
        return RUN_DECODER.decode(body).run

    async def run_names(self, experiment_id: str) -> list[str]:
        """The names of the experiment's runs, following page tokens.

        A run's name is read from its info, or from the ``mlflow.runName`` tag
        where a server only keeps it there.
        """
        names: list[str] = []
        token = ""
        while True:
            payload: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": 1000}
            if token:
                payload["page_token"] = token
            page = RUNS_PAGE_DECODER.decode(await self._post("/runs/search", payload))
            for run in page.runs:
                tags = {tag.key: tag.value for tag in run.data.tags}
                names.append(run.info.run_name or tags.get("mlflow.runName", ""))
            if not page.next_page_token or not page.runs:
                return names
            token = page.next_page_token

    async def metric_history(self, run_id: str, key: str, page_size: int) -> list[HistoryPoint]:
        """Fetch the full history of one metric, following page tokens."""
        points: list[HistoryPoint] = []
        token = ""
        seen_tokens: set[str] = set()
        while True:
            params = {"run_id": run_id, "metric_key": key, "max_results": str(page_size)}
            if token:
                params["page_token"] = token
            page = HISTORY_DECODER.decode(await self._get("/metrics/get-history", params))
            points.extend(page.metrics)
            token = page.next_page_token
            if not token:
                return points
            # A token that comes back again would page forever.
            if token in seen_tokens or not page.metrics:
                raise ApiError(f"get-history paging did not advance for run {run_id} key {key}")
            seen_tokens.add(token)


# --- workloads ---------------------------------------------------------------
#
# A workload hands out request bodies and remembers what each acknowledged
# request wrote, in a compact form, so the read-back can rebuild the expected
# points. Bodies come from byte templates: producing them must cost the driver
# far less than handling them costs the server.


class Workload(ABC):
    """Base class: per-run counters shared by the workers assigned to a run."""

    path = ""
    points_per_request = 0

    def __init__(self, run_ids: list[str]) -> None:
        self.run_ids = run_ids
        self.counters = [0] * len(run_ids)
        self.acked: list[list[tuple[int, int]]] = [[] for _ in run_ids]

    def run_of(self, worker: int) -> int:
        """Index of the run a worker writes to."""
        return worker % len(self.run_ids)

    @abstractmethod
    def next_body(self, worker: int) -> tuple[bytes, tuple[int, int, int]]:
        """Return the next request body for a worker and a token for ack()."""

    def ack(self, token: tuple[int, int, int]) -> None:
        """Record that the request carrying this token was acknowledged."""
        run, number, timestamp = token
        self.acked[run].append((number, timestamp))

    @abstractmethod
    async def verify(self, client: MlflowClient, args: argparse.Namespace) -> Verification:
        """Read back every acknowledged write and compare."""


class MetricWorkload(Workload):
    """A workload writing metric points, verified through metrics/get-history."""

    @abstractmethod
    def expected_points(self) -> dict[tuple[int, int], dict[int, tuple[int, float]]]:
        """(run index, key index) -> step -> (timestamp, value) of acknowledged points."""

    async def verify(self, client: MlflowClient, args: argparse.Namespace) -> Verification:
        return await verify_metric_points(client, self.run_ids, self.expected_points(), args)


class LogMetricWorkload(MetricWorkload):
    """runs/log-metric: point n of a run is key n % 10 at step n // 10."""

    path = "/runs/log-metric"
    points_per_request = 1

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(run_ids)
        self.prefixes = [b'{"run_id":"%s","key":"metric_' % r.encode() for r in run_ids]

    def next_body(self, worker: int) -> tuple[bytes, tuple[int, int, int]]:
        run = self.run_of(worker)
        n = self.counters[run]
        self.counters[run] = n + 1
        key_index = n % len(METRIC_KEYS)
        step = n // len(METRIC_KEYS)
        ts = now_ms()
        body = b'%s%d","value":%r,"timestamp":%d,"step":%d}' % (
            self.prefixes[run], key_index, step + KEY_FRACTIONS[key_index], ts, step,
        )
        return body, (run, n, ts)

    def expected_points(self) -> dict[tuple[int, int], dict[int, tuple[int, float]]]:
        expected: dict[tuple[int, int], dict[int, tuple[int, float]]] = defaultdict(dict)
        nkeys = len(METRIC_KEYS)
        for run, acked in enumerate(self.acked):
            for n, ts in acked:
                key_index, step = n % nkeys, n // nkeys
                expected[(run, key_index)][step] = (ts, step + KEY_FRACTIONS[key_index])
        return expected


class LogBatchWorkload(MetricWorkload):
    """runs/log-batch: batch b of a run holds steps b*100 .. b*100+99 of all 10 keys."""

    path = "/runs/log-batch"
    points_per_request = BATCH_POINTS

    # Placeholders replaced per call: the batch number (digits of the step before
    # the last two) and the timestamp. Neither byte can occur in JSON text.
    BATCH_MARK = b"\x00"
    TS_MARK = b"\x01"

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(run_ids)
        # Batch numbers start at 1 so a step's text never has a leading zero.
        self.counters = [1] * len(run_ids)
        self.templates = [self._template(r) for r in run_ids]

    @classmethod
    def _template(cls, run_id: str) -> bytes:
        items = []
        for s in range(BATCH_STEPS):
            for key_index, key in enumerate(METRIC_KEYS):
                # repr(b*100 + s + i/16) is the step's digits plus the fraction's.
                fraction = repr(KEY_FRACTIONS[key_index])[1:].encode()
                items.append(
                    b'{"key":"%s","value":%s%02d%s,"timestamp":%s,"step":%s%02d}'
                    % (key.encode(), cls.BATCH_MARK, s, fraction, cls.TS_MARK, cls.BATCH_MARK, s)
                )
        return b'{"run_id":"%s","metrics":[%s]}' % (run_id.encode(), b",".join(items))

    def next_body(self, worker: int) -> tuple[bytes, tuple[int, int, int]]:
        run = self.run_of(worker)
        batch = self.counters[run]
        self.counters[run] = batch + 1
        ts = now_ms()
        body = (
            self.templates[run]
            .replace(self.BATCH_MARK, b"%d" % batch)
            .replace(self.TS_MARK, b"%d" % ts)
        )
        return body, (run, batch, ts)

    def expected_points(self) -> dict[tuple[int, int], dict[int, tuple[int, float]]]:
        expected: dict[tuple[int, int], dict[int, tuple[int, float]]] = defaultdict(dict)
        for run, acked in enumerate(self.acked):
            for key_index, fraction in enumerate(KEY_FRACTIONS):
                by_step = expected[(run, key_index)]
                for batch, ts in acked:
                    first = batch * BATCH_STEPS
                    for step in range(first, first + BATCH_STEPS):
                        by_step[step] = (ts, step + fraction)
        return {k: v for k, v in expected.items() if v}


class LogParamWorkload(Workload):
    """runs/log-parameter: call n on a run writes param_n = value_n."""

    path = "/runs/log-parameter"
    points_per_request = 0

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(run_ids)
        self.prefixes = [b'{"run_id":"%s","key":"param_' % r.encode() for r in run_ids]

    def next_body(self, worker: int) -> tuple[bytes, tuple[int, int, int]]:
        run = self.run_of(worker)
        n = self.counters[run]
        self.counters[run] = n + 1
        body = b'%s%d","value":"value_%d"}' % (self.prefixes[run], n, n)
        return body, (run, n, 0)

    async def verify(self, client: MlflowClient, args: argparse.Namespace) -> Verification:
        result = Verification(unit="params")
        for run_index, run_id in enumerate(self.run_ids):
            acked = self.acked[run_index]
            if not acked:
                continue
            run = await client.get_run(run_id)
            stored = Counter((p.key, p.value) for p in run.data.params)
            keys = Counter(p.key for p in run.data.params)
            for n, _ in acked:
                result.checked += 1
                key = f"param_{n}"
                if stored[(key, f"value_{n}")] == 0:
                    if keys[key]:
                        result.note("wrong", f"run {run_id} {key}: value differs")
                    else:
                        result.note("missing", f"run {run_id} {key}")
            result.note_repeats(keys, f"run {run_id} ")
        return result


class CreateRunWorkload(Workload):
    """runs/create: call n creates the run <prefix>-n in the experiment."""

    path = "/runs/create"
    points_per_request = 0

    def __init__(self, experiment_id: str, prefix: str) -> None:
        super().__init__([""])  # one counter for every worker
        self.experiment_id = experiment_id
        self.prefix = prefix

    def next_body(self, worker: int) -> tuple[bytes, tuple[int, int, int]]:
        n = self.counters[0]
        self.counters[0] = n + 1
        ts = now_ms()
        body = b'{"experiment_id":"%s","run_name":"%s-%d","start_time":%d}' % (
            self.experiment_id.encode(), self.prefix.encode(), n, ts,
        )
        return body, (0, n, ts)

    async def verify(self, client: MlflowClient, args: argparse.Namespace) -> Verification:
        result = Verification(unit="runs")
        found = Counter(
            name for name in await client.run_names(self.experiment_id) if name.startswith(self.prefix + "-")
        )
        for n, _ in self.acked[0]:
            result.checked += 1
            if not found[f"{self.prefix}-{n}"]:
                result.note("missing", f"run {self.prefix}-{n}")
        result.note_repeats(found, "run ")
        return result


WORKLOADS: dict[str, type[Workload]] = {
    "metric": LogMetricWorkload,
    "batch": LogBatchWorkload,
    "param": LogParamWorkload,
}


# --- verification ------------------------------------------------------------


@dataclass
class Verification:
    """Outcome of reading back one scenario's acknowledged writes."""

    unit: str = "points"
    checked: int = 0
    missing: int = 0
    duplicated: int = 0
    wrong: int = 0
    error: str = ""
    examples: list[str] = field(default_factory=list)
    skipped: bool = False  # nothing read back (--no-verify)

    @property
    def ok(self) -> bool:
        """True when nothing was missing, doubled or altered."""
        return not (self.missing or self.duplicated or self.wrong or self.error)

    def note(self, kind: str | None, example: str) -> None:
        """Count one mismatch of the given kind and keep a few examples."""
        if kind == "missing":
            self.missing += 1
        elif kind == "wrong":
            self.wrong += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def note_repeats(self, counts: Counter, prefix: str) -> None:
        """Count every name read back more than once as duplicated."""
        for name, count in counts.items():
            if count > 1:
                self.duplicated += count - 1
                self.note(None, f"{prefix}{name} listed {count} times")

    def summary(self) -> str:
        """One human-readable phrase for the scenario line."""
        if self.error:
            return f"verification FAILED: {self.error}"
        if self.skipped:
            return "not verified"
        if self.ok:
            return f"verified {self.checked} {self.unit}"
        return (
            f"verification FAILED: of {self.checked} {self.unit}, {self.missing} missing, "
            f"{self.duplicated} duplicated, {self.wrong} wrong; e.g. " + "; ".join(self.examples)
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "skipped": self.skipped,
            "checked": self.checked,
            "unit": self.unit,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "wrong": self.wrong,
            "error": self.error,
            "examples": self.examples,
        }


async def verify_metric_points(
    client: MlflowClient,
    run_ids: list[str],
    expected: dict[tuple[int, int], dict[int, tuple[int, float]]],
    args: argparse.Namespace,
) -> Verification:
    """Check every expected point is in its metric history, and no step appears twice.

    Steps are never reused within a (run, key), so a step that appears twice in
    the history is a doubled point. Extra steps are tolerated: a request that
    timed out on the client may still have been committed by the server.
    """
    result = Verification(unit="points")
    limit = asyncio.Semaphore(args.verify_concurrency)

    async def check(run_index: int, key_index: int, by_step: dict[int, tuple[int, float]]) -> None:
        run_id, key = run_ids[run_index], METRIC_KEYS[key_index]
        async with limit:
            history = await client.metric_history(run_id, key, args.history_page_size)
        found: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for point in history:
            found[point.step].append((point.timestamp, point.value))
        for step, occurrences in found.items():
            if len(occurrences) > 1:
                result.duplicated += len(occurrences) - 1
                result.note(None, f"run {run_id} {key} step {step} x{len(occurrences)}")
        for step, point in by_step.items():
            result.checked += 1
            occurrences = found.get(step)
            if not occurrences:
                result.note("missing", f"run {run_id} {key} step {step}")
            elif point not in occurrences:
                result.note("wrong", f"run {run_id} {key} step {step}: {occurrences[0]} != {point}")

    await asyncio.gather(*(check(r, k, by_step) for (r, k), by_step in sorted(expected.items())))
    return result


# --- server memory -----------------------------------------------------------


def _proc_children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def named_pid(text: str) -> tuple[str, int]:
    """NAME=PID, as --cpu-of takes it."""
    name, _, pid = text.partition("=")
    if not name or not pid.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PID, got {text!r}")
    return name, int(pid)


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    if psutil is not None:
        try:
            return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return [pid]
    tree, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        tree.append(current)
        frontier.extend(_proc_children(current))
    return tree


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


class MemorySampler:
    """Peak summed RSS of a process tree, sampled every interval on the event loop.

    The tree is re-listed every second so workers started or replaced during a
    scenario are included; between re-listings only /proc/PID/statm is read.
    """

    def __init__(self, pid: int, interval: float = 0.1, rescan: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.rescan = rescan
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        pids: list[int] = []
        listed_at = float("-inf")
        while True:
            now = time.monotonic()
            if now - listed_at >= self.rescan:
                pids = process_tree(self.pid)
                listed_at = now
            self.peak = max(self.peak, sum(rss_bytes(p) for p in pids))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Begin sampling from a zero peak."""
        self.peak = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> float:
        """Stop sampling and return the peak in MB."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        return self.peak / 2**20


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_seconds() -> tuple[float, float]:
    """CPU seconds of the whole machine so far, summed over its cores: (busy, all). Busy is all
    but idle and I/O wait, so it counts time taken by other guests (steal) as busy too."""
    with open("/proc/stat", "rb") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS, sum(ticks) / _CLOCK_TICKS


async def postmaster_of(conn) -> int:
    """The pid of the PostgreSQL server's main process behind an asyncpg connection: its backend's
    parent (the server must run on this machine)."""
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    with open(f"/proc/{backend}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


class CpuMeter:
    """CPU seconds a process tree spends between :meth:`start` and :meth:`stop`.

    Processes started in between count from zero; a process that exits in
    between loses what it spent since the start.
    """

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid
        self._at_start: dict[int, float] = {}

    def start(self) -> None:
        self._at_start = {p: cpu_seconds(p) for p in process_tree(self.pid)}

    def stop(self) -> float:
        return sum(max(0.0, cpu_seconds(p) - self._at_start.get(p, 0.0)) for p in process_tree(self.pid))


# --- the flood ---------------------------------------------------------------


@dataclass
class FloodStats:
    """What the measured part of a scenario produced."""

    ok: int = 0
    started: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    warmup_requests: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    # CPU seconds of each --cpu-of process tree over the measured window
    tree_cpu_seconds: dict[str, float] = field(default_factory=dict)
    # the whole machine's busy share of its cores over the measured window (1.0: every core busy)
    machine_busy: float = 0.0


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def flood(
    session: aiohttp.ClientSession,
    url: str,
    workload: Workload,
    concurrency: int,
    warmup: float,
    duration: float,
    max_requests: int | None,
    meters: Sequence[CpuMeter] = (),
) -> FloodStats:
    """Run `concurrency` workers for warmup + duration seconds and collect stats.

    Requests started during the warmup are acknowledged and verified like any
    other but left out of the figures. No worker starts a request after the
    deadline; requests in flight then finish or hit the session timeout.
    """
    stats = FloodStats()
    started_at = time.perf_counter()
    measure_from = started_at + warmup
    deadline = measure_from + duration
    perf_counter = time.perf_counter

    async def worker(index: int) -> None:
        while True:
            t0 = perf_counter()
            if t0 >= deadline:
                return
            measured = t0 >= measure_from
            if measured:
                if max_requests is not None and stats.started >= max_requests:
                    return
                stats.started += 1
            else:
                stats.warmup_requests += 1
            body, token = workload.next_body(index)
            try:
                async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
                    await resp.read()
                    status = resp.status
            except asyncio.TimeoutError:
                status = "timeout"
            except aiohttp.ClientError as exc:
                status = type(exc).__name__
            if status == 200:
                workload.ack(token)
                if measured:
                    stats.ok += 1
                    stats.latencies.append(perf_counter() - t0)
            elif measured:
                stats.failed[str(status)] += 1

    # CPU time is taken over the measured window only.
    cpu_at_measure: list[float] = []
    machine_at_measure: list[tuple[float, float]] = []

    def start_meters() -> None:
        cpu_at_measure.append(time.process_time())
        machine_at_measure.append(machine_seconds())
        for meter in meters:
            meter.start()

    async def mark_measure_start() -> None:
        await asyncio.sleep(max(0.0, measure_from - perf_counter()))
        start_meters()

    marker = asyncio.get_running_loop().create_task(mark_measure_start())
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finished = perf_counter()
    if not marker.done():  # every worker stopped before the warmup ended
        marker.cancel()
        start_meters()
    stats.tree_cpu_seconds = {meter.name: meter.stop() for meter in meters}
    busy, total = machine_seconds()
    stats.machine_busy = (busy - machine_at_measure[0][0]) / max(total - machine_at_measure[0][1], 1e-9)
    stats.elapsed = max(finished - measure_from, 1e-9)
    stats.cpu_seconds = time.process_time() - cpu_at_measure[0]
    return stats


@dataclass
class ScenarioResult:
    """Everything reported for one scenario."""

    scenario: Scenario
    runs: int
    stats: FloodStats
    verification: Verification
    peak_rss_mb: float | None
    peak_rss_verify_mb: float | None
    points_per_request: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        s = self.stats
        lat = sorted(s.latencies)
        failed = sum(s.failed.values())
        return {
            "scenario": self.scenario.name,
            "concurrency": self.scenario.concurrency,
            "runs": self.runs,
            "measured_seconds": round(s.elapsed, 3),
            "requests_ok": s.ok,
            "requests_failed": failed,
            "failed_by_status": dict(s.failed),
            "warmup_requests": s.warmup_requests,
            "requests_per_s": round(s.ok / s.elapsed, 1),
            "points_per_s": round(s.ok * self.points_per_request / s.elapsed, 1),
            "latency_ms": {
                "p50": round(percentile(lat, 0.50) * 1000, 2),
                "p90": round(percentile(lat, 0.90) * 1000, 2),
                "p99": round(percentile(lat, 0.99) * 1000, 2),
                "max": round((lat[-1] if lat else 0.0) * 1000, 2),
                "mean": round(sum(lat) / len(lat) * 1000, 2) if lat else 0.0,
            },
            "server_peak_rss_mb": None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1),
            "server_peak_rss_during_verify_mb": (
                None if self.peak_rss_verify_mb is None else round(self.peak_rss_verify_mb, 1)
            ),
            "driver_cpu_percent": round(100 * s.cpu_seconds / s.elapsed, 1),
            "cpu_percent": {name: round(100 * cpu / s.elapsed, 1) for name, cpu in s.tree_cpu_seconds.items()},
            "machine_busy_percent": round(100 * s.machine_busy, 1),
            "cpu_us_per_point": {
                name: round(1e6 * cpu / (s.ok * self.points_per_request), 2)
                for name, cpu in {"driver": s.cpu_seconds, **s.tree_cpu_seconds}.items()
                if s.ok and self.points_per_request
            },
            "verification": self.verification.as_dict(),
        }

    def line(self) -> str:
        """The one line printed for the scenario."""
        d = self.as_dict()
        lat = d["latency_ms"]
        failed = f"failed={d['requests_failed']}"
        if d["failed_by_status"]:
            failed += " (" + ", ".join(
                f"{'HTTP ' if k.isdigit() else ''}{k}: {v}" for k, v in sorted(d["failed_by_status"].items())
            ) + ")"
        points = f"{d['points_per_s']:.0f}" if self.points_per_request else "-"
        mem = "-" if d["server_peak_rss_mb"] is None else f"{d['server_peak_rss_mb']:.0f}MB"
        return (
            f"{self.scenario.name:<16} ok={d['requests_ok']} {failed} "
            f"req/s={d['requests_per_s']:.1f} points/s={points} "
            f"p50={lat['p50']:.1f} p90={lat['p90']:.1f} p99={lat['p99']:.1f} max={lat['max']:.1f} ms "
            f"server_peak={mem} driver_cpu={d['driver_cpu_percent']:.0f}% "
            + "".join(f"{name}_cpu={percent:.0f}% " for name, percent in d["cpu_percent"].items())
            + f"machine_busy={d['machine_busy_percent']:.0f}% "
            + self.verification.summary()
        )


async def run_scenario(
    session: aiohttp.ClientSession,
    client: MlflowClient,
    experiment_id: str,
    scenario: Scenario,
    args: argparse.Namespace,
) -> ScenarioResult:
    """Create the scenario's runs, flood them, then read everything back."""
    if scenario.kind == "create":
        nruns = 0
        workload: Workload = CreateRunWorkload(experiment_id, f"{scenario.name}-{uuid.uuid4().hex[:8]}")
    else:
        nruns = args.runs or max(1, -(-scenario.concurrency // WORKERS_PER_RUN))
        nruns = min(nruns, scenario.concurrency)
        run_ids = [
            await client.create_run(experiment_id, f"{scenario.name}-{i}") for i in range(nruns)
        ]
        workload = WORKLOADS[scenario.kind](run_ids)

    sampler = MemorySampler(args.server_pid) if args.server_pid else None
    if sampler:
        sampler.start()
    stats = await flood(
        session,
        client.api + workload.path,
        workload,
        scenario.concurrency,
        args.warmup,
        args.duration,
        args.max_requests,
        [CpuMeter(name, pid) for name, pid in args.cpu_of],
    )
    peak = await sampler.stop() if sampler else None

    peak_verify = None
    if args.no_verify:
        verification = Verification(skipped=True)
    else:
        if sampler:
            sampler.start()
        try:
            verification = await workload.verify(client, args)
        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, msgspec.DecodeError) as exc:
            verification = Verification(error=f"{type(exc).__name__}: {exc}")
        peak_verify = await sampler.stop() if sampler else None

    return ScenarioResult(
        scenario, nruns, stats, verification, peak, peak_verify, workload.points_per_request
    )


async def bench(args: argparse.Namespace) -> int:
    """Run the selected scenarios; return the process exit status."""
    scenarios = [SCENARIOS_BY_NAME[n] for n in (args.scenario or [s.name for s in SCENARIOS])]
    connections = max(max(s.concurrency for s in scenarios), args.verify_concurrency)
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, use_dns_cache=True)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    results: list[ScenarioResult] = []
    exit_status = 0
    experiment_name = f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {
        "url": args.url,
        "experiment": experiment_name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "max_requests": args.max_requests,
            "runs": args.runs,
            "timeout_s": args.timeout,
            "server_pid": args.server_pid,
            "event_loop": "uvloop" if uvloop is not None else "asyncio",
            "cpu_count": os.cpu_count(),
        },
        "scenarios": [],
    }

    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"Authorization": "Bearer " + args.token} if args.token else None,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        # Ask for plain replies: some servers (FastTrackML) compress their JSON
        # when offered, which the driver reads raw.
        skip_auto_headers=("Accept-Encoding",),
    ) as session:
        client = MlflowClient(session, args.url)
        try:
            experiment_id = await client.create_experiment(experiment_name)
        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            print(f"cannot create experiment at {args.url}: {exc}", file=sys.stderr)
            return 2
        print(
            f"target {args.url} experiment {experiment_name} (id {experiment_id}), "
            f"{args.duration:g}s per scenario, warmup {args.warmup:g}s, "
            f"loop {report['settings']['event_loop']}",
            flush=True,
        )
        try:
            for scenario in scenarios:
                try:
                    result = await run_scenario(session, client, experiment_id, scenario, args)
                except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    print(f"{scenario.name:<16} could not run: {exc}", flush=True)
                    report["scenarios"].append({"scenario": scenario.name, "error": str(exc)})
                    exit_status = 2
                    continue
                results.append(result)
                report["scenarios"].append(result.as_dict())
                print(result.line(), flush=True)
                if not result.verification.ok:
                    exit_status = max(exit_status, 1)
        finally:
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(report, f, indent=2)
                    f.write("\n")
    return exit_status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Write-flood benchmark for MLflow-compatible tracking servers.",
    )
    parser.add_argument("--url", required=True, help="tracking server base URL, e.g. http://127.0.0.1:5000")
    parser.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=list(SCENARIOS_BY_NAME),
        metavar="NAME",
        help="scenario(s) to run, in the given order (default: all): " + ", ".join(SCENARIOS_BY_NAME),
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds per scenario excluded from the figures")
    parser.add_argument(
        "--max-requests", type=int, default=None,
        help="also stop a scenario after this many measured requests",
    )
    parser.add_argument(
        "--runs", type=int, default=None,
        help=f"runs per scenario, workers spread over them (default: one per {WORKERS_PER_RUN} workers)",
    )
    parser.add_argument("--server-pid", type=int, default=None, help="sample this process tree's RSS")
    parser.add_argument(
        "--cpu-of", type=named_pid, action="append", default=[], metavar="NAME=PID",
        help="report the CPU this process tree spends over the measured window (repeatable), "
        "e.g. gateway=1234 postgres=5678",
    )
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    parser.add_argument(
        "--token", default=os.environ.get("MLFLOW_TRACKING_TOKEN") or None,
        help="bearer token sent on every request (default: MLFLOW_TRACKING_TOKEN)",
    )
    parser.add_argument(
        "--history-page-size", type=int, default=25000,
        help="max_results per metrics/get-history page during verification (default 25000)",
    )
    parser.add_argument(
        "--no-verify", action="store_true",
        help="read nothing back (for a server that stores nothing, such as loadtest/request_path.py)",
    )
    parser.add_argument(
        "--verify-concurrency", type=int, default=8,
        help="parallel read-back requests during verification (default 8)",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.max_requests is not None and args.max_requests < 1:
        parser.error("--max-requests must be at least 1")
    if not 1 <= args.history_page_size <= 25000:
        parser.error("--history-page-size must be between 1 and 25000")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if uvloop is not None:
        return uvloop.run(bench(args))
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
