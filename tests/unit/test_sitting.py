"""loadtest/sitting.py and bench.py: each gateway a sitting measures runs the source it names; what it
reports of the CPU."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "loadtest" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sitting = _load("sitting")


def test_a_baseline_runs_its_own_checkout_and_the_gateway_this_one(tmp_path):
    baseline = tmp_path / "baseline"
    (baseline / "gateway").mkdir(parents=True)
    (baseline / "gateway" / "__init__.py").write_text("")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = argparse.Namespace(baseline=baseline)
    for workers in (1, 2):
        assert sitting.imported_from(sitting.SERVERS[f"baseline-{workers}"], args, scratch) == baseline.resolve()
        assert sitting.imported_from(sitting.SERVERS[f"gateway-{workers}"], args, scratch) == ROOT
    assert sitting.imported_from(sitting.SERVERS["request-path-2"], args, scratch) == ROOT
    # Started from this checkout, the baseline would import this checkout's gateway: the
    # check the sitting makes before each round refuses to measure it so.
    assert sitting.imported_from(sitting.SERVERS["baseline-2"], args, ROOT) == ROOT


def _round(points_per_s: float, server_us: float, busy: float) -> dict:
    return {
        "scenario": "log-batch-c16", "points_per_s": points_per_s, "requests_per_s": points_per_s / 1000,
        "requests_failed": 0, "verification": {"ok": True}, "latency_ms": {"p50": 20.0, "p99": 60.0},
        "cpu_us_per_point": {"server": server_us, "postgres": 0.5, "driver": 0.25}, "machine_busy_percent": busy,
    }


def test_the_cpu_table_gives_the_median_rounds_cost_and_how_busy_the_machine_was():
    rounds = [_round(700_000, 1.3, 91.0), _round(900_000, 1.1, 97.0), _round(500_000, 1.6, 70.0)]
    text = sitting.table({"gateway-2": [{"scenarios": rounds}]}, [])
    assert "| log-batch-c16 | 1.30 / 0.50 / 0.25; 91 % |" in text
    assert "700,000 [700,000, 900,000, 500,000]" in text


def test_the_machines_busy_time_grows_while_this_process_computes():
    bench = _load("bench")
    busy_before, total_before = bench.machine_seconds()
    spin_until = time.process_time() + 0.3
    while time.process_time() < spin_until:
        sum(range(10_000))  # CPU work for the machine's counters to see
    busy_after, total_after = bench.machine_seconds()
    assert busy_after - busy_before >= 0.25  # this process's 0.3 s at least, give or take a clock tick
    assert total_after - total_before >= busy_after - busy_before
