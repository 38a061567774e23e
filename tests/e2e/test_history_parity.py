"""get-history answers as a stock `mlflow server` does: the same points in the same order, page for page.

The same awkward series is logged to both servers through MlflowClient.log_batch:
NaN, both infinities, -0.0, the smallest subnormal and the largest double,
steps and timestamps at the ends of int64, timestamps shared by several steps,
points that differ only in value, and calls whose time ranges overlap (so the
gateway stores chunks that are merged when read, and pages straddle them).
Every page is then read at several page sizes through raw HTTP, and the whole
history through MlflowClient.get_metric_history and get-history-bulk.
"""

from __future__ import annotations

import math

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

pytestmark = pytest.mark.timeout(600)

KEY = "loss"
INT64_MAX = 2**63 - 1
SPECIALS = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e300, 1.7976931348623157e308, -1e-300, 2.0**70]
CALLS = 5
CALL_POINTS = 400
PAGE_SIZES = [7, 100, 333, 1000, 25_000]


def series() -> list[list[tuple[float, int, int]]]:
    """The points of each log-batch call as (value, timestamp, step)."""
    calls = []
    for call in range(CALLS):
        points = []
        for index in range(CALL_POINTS):
            step = call * CALL_POINTS + index
            # Each call spans most of the same time range; a timestamp recurs at several steps.
            timestamp = 10_000 + (index * 13 + call * 211) % 1500
            value = SPECIALS[index // 11 % len(SPECIALS)] if index % 11 == 0 else index / 7 - call
            points.append((value, timestamp, step))
            if index % 17 == 5 and index % 11:
                # The same step and timestamp with another value: the value decides the order.
                points.append((value - 0.5, timestamp, step))
        calls.append(points)
    calls.append([(1.0, INT64_MAX, INT64_MAX), (2.0, 0, -(2**62)), (3.0, INT64_MAX, 0), (4.0, 0, INT64_MAX - 1),
                  (5.0, 2**40, -5)])
    return calls


def log_series(uri: str) -> str:
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(f"history-parity-{uri.rsplit(':', 1)[-1]}")
    run_id = client.create_run(experiment_id).info.run_id
    for points in series():
        client.log_batch(run_id, metrics=[Metric(KEY, value, timestamp, step) for value, timestamp, step in points])
    return run_id


@pytest.fixture(scope="module")
def runs(gateway, mlflow_server) -> dict[str, tuple[str, str]]:
    """server name -> (url, run id) of the logged series."""
    return {name: (url, log_series(url)) for name, url in (("mlflow", mlflow_server.url), ("gateway", gateway.url))}


def read_pages(url: str, run_id: str, page_size: int) -> list[tuple[list, str | None]]:
    pages, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": KEY, "max_results": page_size}
        if token:
            params["page_token"] = token
        response = requests.get(f"{url}/api/2.0/mlflow/metrics/get-history", params=params, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        token = body.get("next_page_token")
        pages.append((body.get("metrics", []), token))
        if not token:
            return pages


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_pages_match_mlflow_server(runs, page_size):
    answers = {name: read_pages(url, run_id, page_size) for name, (url, run_id) in runs.items()}
    logged = sum(len(points) for points in series())
    assert sum(len(metrics) for metrics, _ in answers["gateway"]) == logged
    assert len(answers["gateway"]) == len(answers["mlflow"]) == -(-logged // page_size)
    for number, (ours, theirs) in enumerate(zip(answers["gateway"], answers["mlflow"])):
        # Parsed JSON compares 1.7976931348623157e308 with MLflow's ...e+308, and NaN as "NaN".
        assert ours == theirs, f"page {number} of {page_size}"


def comparable(metrics) -> list[tuple]:
    return [(m.key, "NaN" if math.isnan(m.value) else m.value, m.timestamp, m.step) for m in metrics]


def test_client_history_matches_mlflow_server(runs):
    found = {
        name: comparable(MlflowClient(url).get_metric_history(run_id, KEY)) for name, (url, run_id) in runs.items()
    }
    assert found["gateway"] == found["mlflow"]
    values = [value for _, value, _, _ in found["gateway"]]
    assert "NaN" in values and 1.7976931348623157e308 in values and -1.7976931348623157e308 in values
    assert {(t, s) for _, _, t, s in found["gateway"]} >= {(INT64_MAX, INT64_MAX), (0, -(2**62))}


@pytest.mark.parametrize("max_results", [25_000, 10])
def test_history_bulk_matches_mlflow_server(runs, max_results):
    found = {}
    for name, (url, run_id) in runs.items():
        response = requests.get(
            f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk",
            params={"run_id": run_id, "metric_key": KEY, "max_results": max_results}, timeout=60,
        )
        assert response.status_code == 200, response.text
        metrics = response.json()["metrics"]
        assert {m.pop("run_id") for m in metrics} == {run_id}
        # MLflow's handler for this UI path writes NaN as a bare NaN (Python's json), the gateway as
        # "NaN" (as get-history writes it); they compare as one here.
        for metric in metrics:
            if metric["value"] != metric["value"]:
                metric["value"] = "NaN"
        found[name] = metrics
    assert found["gateway"] == found["mlflow"]
