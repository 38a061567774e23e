"""The locustfile against a real gateway: every call kind succeeds and every acknowledged point is stored."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
API = "/api/2.0/mlflow"
POINTS_TAG = "loadtest.metric_points"

# locust is a test dependency. It runs in a subprocess and is not imported here:
# importing it would monkey-patch this test process with gevent.
pytestmark = pytest.mark.timeout(90)


def run_locust(host: str, csv_prefix: Path, *args: str, timeout: float = 45) -> subprocess.CompletedProcess:
    """Run the locustfile headless in its own process and return it finished."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "--csv", str(csv_prefix), "--only-summary", *args,
    ]
    # The caller's LOADTEST_*/LOCUST_* settings must not change what is tested.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADTEST_", "LOCUST_"))}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def stats_by_name(csv_prefix: Path) -> dict[str, dict[str, str]]:
    return {row["Name"]: row for row in read_csv(Path(f"{csv_prefix}_stats.csv"))}


def api_get(session: requests.Session, url: str, path: str, **params) -> dict:
    response = session.get(url + API + path, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def runs_of(session: requests.Session, url: str, experiment_id: str) -> list[dict]:
    runs, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 1000, **({"page_token": token} if token else {})}
        response = session.post(url + API + "/runs/search", json=body, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def history_length(session: requests.Session, url: str, run_id: str, key: str) -> int:
    count, token = 0, None
    while True:
        params = {"run_id": run_id, "metric_key": key, "max_results": 25000, **({"page_token": token} if token else {})}
        page = api_get(session, url, "/metrics/get-history", **params)
        count += len(page.get("metrics", []))
        token = page.get("next_page_token")
        if not token:
            return count


def test_training_users_log_through_every_endpoint_and_every_point_lands(gateway, tmp_path):
    experiment = "locust-" + uuid.uuid4().hex
    batch_size, params = 5, 4
    csv_prefix = tmp_path / "stats"
    result = run_locust(
        gateway.url, csv_prefix, "-u", "8", "-r", "8", "-t", "5s",
        # Users finish the step they are in, so no acknowledged request goes unreported.
        "--stop-timeout", "10",
        "--experiment-name", experiment, "--steps-per-run", "6", "--metric-keys", "3",
        "--batch-size", str(batch_size), "--batch-every", "2", "--params", str(params),
        "--tag-every", "3", "--think-time", "0.2",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]

    stats = stats_by_name(csv_prefix)
    for name in (
        "experiments/get-by-name", "experiments/create", "runs/create", "runs/log-batch (params)",
        "runs/log-metric", "runs/log-batch (metrics)", "runs/set-tag", "runs/update",
    ):
        assert name in stats, f"no {name} requests: {sorted(stats)}"
        assert int(stats[name]["Request Count"]) > 0, name
        assert int(stats[name]["Failure Count"]) == 0, stats[name]
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    assert read_csv(Path(f"{csv_prefix}_failures.csv")) == []
    assert read_csv(Path(f"{csv_prefix}_exceptions.csv")) == []

    session = requests.Session()
    experiment_id = api_get(session, gateway.url, "/experiments/get-by-name", experiment_name=experiment)[
        "experiment"]["experiment_id"]
    runs = runs_of(session, gateway.url, experiment_id)
    assert len(runs) == int(stats["runs/create"]["Request Count"])
    assert len(runs) == int(stats["runs/update"]["Request Count"])

    total_points = 0
    for run in runs:
        info, data = run["info"], run["data"]
        assert info["status"] in ("FINISHED", "KILLED"), info
        assert len(data.get("params", [])) == params
        tags = {tag["key"]: tag["value"] for tag in data.get("tags", [])}
        keys = [metric["key"] for metric in data.get("metrics", [])]
        stored = sum(history_length(session, gateway.url, info["run_id"], key) for key in keys)
        assert stored > 0, info
        assert stored == int(tags[POINTS_TAG]), (info["run_id"], stored, tags[POINTS_TAG])
        total_points += stored
    acknowledged = int(stats["runs/log-metric"]["Request Count"]) + batch_size * int(
        stats["runs/log-batch (metrics)"]["Request Count"]
    )
    assert total_points == acknowledged


def test_ramp_shape_grows_the_users_then_ends_the_test(gateway, tmp_path):
    csv_prefix = tmp_path / "ramp"
    started = time.monotonic()
    result = run_locust(
        gateway.url, csv_prefix, "-u", "4", "-r", "4", "--stop-timeout", "10",
        "--shape", "ramp", "--ramp-seconds", "3", "--steady-seconds", "2",
        "--experiment-name", "locust-ramp-" + uuid.uuid4().hex, "--think-time", "0.2",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # No --run-time: the shape alone ended the test.
    assert time.monotonic() - started < 30
    user_counts = [int(row["User Count"]) for row in read_csv(Path(f"{csv_prefix}_stats_history.csv"))
                   if row["Name"] == "Aggregated"]
    assert max(user_counts) == 4
    assert any(0 < count < 4 for count in user_counts), user_counts
    assert int(stats_by_name(csv_prefix)["runs/log-metric"]["Request Count"]) > 0

    # The plotting tool reads locust's history as written.
    picture = tmp_path / "ramp.png"
    plotted = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "plot_locust.py"), "--output", str(picture),
         f"gateway={csv_prefix}_stats_history.csv"],
        capture_output=True, text=True, timeout=60,
    )
    assert plotted.returncode == 0, plotted.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
