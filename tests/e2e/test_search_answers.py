"""runs/search gives a run's kept answer again only while the run is unchanged.

Two gateways serve one database: one keeps answers (the default), the other keeps none
and reads every run. After each kind of write, through the stock client or raw HTTP,
both must answer runs/search alike, and the page must show the write.
"""

from __future__ import annotations

import time

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, LoggedModelOutput, Metric, Param, RunTag

from tests.server import GatewayProcess

API = "/api/2.0/mlflow"


def post(gateway, path: str, body: dict) -> dict:
    response = requests.post(gateway.url + API + path, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def search(gateway, experiment_id: str) -> dict:
    return post(gateway, "/runs/search", {"experiment_ids": [experiment_id], "run_view_type": "ALL",
                                          "max_results": 1000})


def answered(gateway) -> dict[str, float]:
    """The gateway's count of runs answered by runs/search, by source (kept or read)."""
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    found = {"kept": 0.0, "read": 0.0}
    for line in text.splitlines():
        if line.startswith("gateway_search_runs_total{"):
            found[line.split('source="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.fixture
def two_gateways(fresh_database_url):
    keeping = GatewayProcess(fresh_database_url)
    reading = GatewayProcess(fresh_database_url, "--search-cache-bytes", "0")
    yield keeping, reading
    keeping.stop()
    reading.stop()


def test_every_kind_of_write_shows_in_the_next_search(two_gateways):
    keeping, reading = two_gateways
    client = MlflowClient(keeping.url)
    experiment_id = client.create_experiment("answers")
    first, second, third = (client.create_run(experiment_id).info.run_id for _ in range(3))
    model_id = client.create_logged_model(experiment_id, name="model").model_id
    now = int(time.time() * 1000)
    history = {"run_id": first, "artifact_path": "model", "utc_time_created": "2026-12-07 10:00:00.000000",
               "flavors": {"python_function": {}}}
    writes = [
        ("a metric", lambda: client.log_metric(first, "loss", 0.5, step=1)),
        ("a later point", lambda: client.log_metric(first, "loss", 0.25, step=2)),
        ("a param", lambda: client.log_param(first, "lr", "0.1")),
        ("a tag", lambda: client.set_tag(second, "team", "a")),
        ("a tag changed", lambda: client.set_tag(second, "team", "b")),
        ("a tag deleted", lambda: client.delete_tag(second, "team")),
        ("a batch", lambda: client.log_batch(third, metrics=[Metric("acc", 0.9, now, 0)], params=[Param("p", "1")],
                                             tags=[RunTag("t", "x")])),
        ("a run ended", lambda: client.set_terminated(third, "FINISHED")),
        ("a run renamed", lambda: client.update_run(third, name="renamed")),
        ("a run deleted", lambda: client.delete_run(first)),
        ("a run restored", lambda: client.restore_run(first)),
        ("inputs", lambda: client.log_inputs(second, datasets=[DatasetInput(
            Dataset(name="train", digest="abc", source_type="local", source="/data"))])),
        ("outputs", lambda: client.log_outputs(second, [LoggedModelOutput(model_id, step=3)])),
        ("a model in the history", lambda: post(keeping, "/runs/log-model",
                                                {"run_id": first, "model_json": __import__("json").dumps(history)})),
        ("the experiment deleted", lambda: client.delete_experiment(experiment_id)),
        ("the experiment restored", lambda: client.restore_experiment(experiment_id)),
        ("runs deleted in bulk", lambda: post(keeping, "/databricks/runs/delete-runs",
                                              {"experiment_id": experiment_id, "max_timestamp_millis": now + 60_000})),
        ("runs restored in bulk", lambda: post(keeping, "/databricks/runs/restore-runs",
                                               {"experiment_id": experiment_id, "min_timestamp_millis": 0})),
    ]
    before = search(keeping, experiment_id)
    assert before == search(reading, experiment_id)
    for name, write in writes:
        write()
        after = search(keeping, experiment_id)
        assert after == search(reading, experiment_id), f"after {name}, a kept answer was given again"
        assert after != before, f"{name} does not show in runs/search"
        before = after
    # With nothing written since, every run is given as kept; one write reads that run alone again.
    counted = answered(keeping)
    assert search(keeping, experiment_id) == before
    again = answered(keeping)
    assert (again["kept"] - counted["kept"], again["read"] - counted["read"]) == (3, 0)
    client.log_metric(second, "loss", 1.0)
    search(keeping, experiment_id)
    last = answered(keeping)
    assert (last["kept"] - again["kept"], last["read"] - again["read"]) == (2, 1)
