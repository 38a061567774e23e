"""loadtest/sitting.py: each gateway it measures runs the source it names."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("sitting", ROOT / "loadtest" / "sitting.py")
sitting = sys.modules["sitting"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitting)


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
    # Started from this checkout, the baseline would import this checkout's gateway: the
    # check the sitting makes before each round refuses to measure it so.
    assert sitting.imported_from(sitting.SERVERS["baseline-2"], args, ROOT) == ROOT
