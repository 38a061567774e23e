"""`gateway relay` in front of a stock `mlflow server` and of `gateway serve`: the client cannot tell.

Every test drives real processes on 127.0.0.1: the upstream, the relay (its
own subprocess with its own spool) and the stock mlflow client or raw HTTP.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.e2e.flood import API
from tests.relay_processes import RelayProcess

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def relay_over_mlflow(mlflow_server):
    relay = RelayProcess(mlflow_server.url, "--batch-linger-ms", "50")
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def relay_over_gateway(gateway):
    relay = RelayProcess(gateway.url, "--batch-linger-ms", "50")
    yield relay
    relay.stop()


@pytest.fixture(params=["mlflow", "gateway"])
def through_relay(request, monkeypatch):
    """The stock client pointed at a relay, in front of `mlflow server` and of `gateway serve`."""
    relay = request.getfixturevalue("relay_over_mlflow" if request.param == "mlflow" else "relay_over_gateway")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relay.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(relay.url)
    yield relay
    while mlflow.active_run() is not None:
        mlflow.end_run()


def assert_client_error(error: MlflowException, message: str) -> None:
    assert error.message.startswith(f"{error.error_code}: {message}"), error.message


def wait_until(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; a bound on waiting, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def dead_letters(relay: RelayProcess) -> list[tuple]:
    with sqlite3.connect(os.path.join(relay.spool_dir, "spool.sqlite3")) as conn:
        return conn.execute("SELECT run_id, kind, entity, status, error_code, message FROM dead_letters").fetchall()


def test_training_loop_through_the_relay(through_relay):
    experiment = mlflow.set_experiment("relay-loop-" + uuid.uuid4().hex[:8])
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": 0.01, "layers": 3})
        mlflow.log_param("optimizer", "adam")
        mlflow.set_tag("team", "vision")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"acc": step / 10, "f1": step / 20}, step=step)
        mlflow.log_metric("nan_metric", math.nan)
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_metric", 7.5)
    client = MlflowClient()

    run = client.get_run(parent.info.run_id)
    assert run.info.run_name == "parent"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert {k: v for k, v in run.data.metrics.items() if k != "nan_metric"} == {"loss": 0.2, "acc": 0.4, "f1": 0.2}
    assert math.isnan(run.data.metrics["nan_metric"])
    assert run.data.tags["team"] == "vision"

    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert client.get_run(child.info.run_id).data.metrics == {"child_metric": 7.5}

    found = client.search_runs([experiment.experiment_id], filter_string="metrics.loss < 0.5 and params.optimizer = 'adam'")
    assert [r.info.run_id for r in found] == [parent.info.run_id]
    # the relay coalesced: fewer log-batch calls upstream than writes it took
    assert through_relay.metric("gateway_relay_upstream_calls_total", 'endpoint="runs/log-batch",status="200"') >= 1


def test_errors_come_at_once_from_what_the_relay_knows(through_relay):
    client = MlflowClient()
    experiment_id = client.create_experiment("relay-errors-" + uuid.uuid4().hex[:8])
    run_id = client.create_run(experiment_id).info.run_id

    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException) as raised:
        client.log_param(run_id, "lr", "0.2")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert_client_error(
        raised.value,
        f"Changing param values is not allowed. Param with key='lr' was already logged with value='0.1' "
        f"for run ID='{run_id}'. Attempted logging new value '0.2'.",
    )
    with pytest.raises(MlflowException) as raised:
        client.log_batch(run_id, params=[mlflow.entities.Param("lr", "0.3")])
    assert_client_error(
        raised.value,
        "Changing param values is not allowed. Params were already logged="
        f"'[{{'key': 'lr', 'old_value': '0.1', 'new_value': '0.3'}}]' for run ID='{run_id}'.",
    )

    with pytest.raises(MlflowException) as raised:
        client.log_metric(run_id, "bad$key", 1.0)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Names may only contain alphanumerics" in raised.value.message

    too_many = [mlflow.entities.Metric("m", float(i), 1000, i) for i in range(1001)]
    answer = requests.post(
        through_relay.url + API + "/runs/log-batch",
        json={"run_id": run_id, "metrics": [{"key": m.key, "value": m.value, "timestamp": 1, "step": m.step} for m in too_many]},
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
        "Please split up metrics across multiple requests and try again.",
    }

    unknown = uuid.uuid4().hex
    answer = requests.post(
        through_relay.url + API + "/runs/log-metric",
        json={"run_id": unknown, "key": "m", "value": 1, "timestamp": 1},
        timeout=30,
    )
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert unknown in answer.json()["message"]

    client.delete_run(run_id)
    with pytest.raises(MlflowException) as raised:
        client.log_metric(run_id, "after_delete", 1.0)
    assert_client_error(raised.value, f"The run {run_id} must be in the 'active' state. Current state is deleted.")
    client.restore_run(run_id)
    client.log_metric(run_id, "after_restore", 2.0)
    assert client.get_run(run_id).data.metrics["after_restore"] == 2.0
    assert client.get_run(run_id).data.params == {"lr": "0.1"}


def test_a_conflict_only_the_upstream_sees_is_dead_lettered(through_relay):
    upstream = through_relay.upstream
    direct = MlflowClient(upstream)
    experiment_id = direct.create_experiment("relay-dead-" + uuid.uuid4().hex[:8])
    run_id = direct.create_run(experiment_id).info.run_id
    relayed = MlflowClient(through_relay.url)
    relayed.log_metric(run_id, "warmup", 1.0)  # the relay checks the run now and caches its params
    direct.log_param(run_id, "seed", "1")  # behind the relay's back
    before = through_relay.metric("gateway_relay_dead_letters_total")
    relayed.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric("loss", 0.5, 1000, s) for s in range(10)],
        params=[mlflow.entities.Param("seed", "2"), mlflow.entities.Param("batch", "64")],
        tags=[mlflow.entities.RunTag("phase", "train")],
    )
    run = relayed.get_run(run_id)  # delivers the run's spooled writes first
    assert run.data.params == {"seed": "1", "batch": "64"}
    assert run.data.tags["phase"] == "train"
    assert [m.step for m in relayed.get_metric_history(run_id, "loss")] == list(range(10))
    letters = [letter for letter in dead_letters(through_relay) if letter[0] == run_id]
    assert len(letters) == 1
    run_of, kind, entity, status, error_code, message = letters[0]
    assert (kind, status, error_code) == ("param", 400, "INVALID_PARAMETER_VALUE")
    assert '"key":"seed"' in entity and '"value":"2"' in entity
    assert "Changing param values is not allowed" in message
    assert through_relay.metric("gateway_relay_dead_letters_total") == before + 1
    assert "dead letter: run " + run_id in through_relay.log()


def test_artifacts_stream_through_to_mlflow(relay_over_mlflow, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relay_over_mlflow.url)
    mlflow.set_tracking_uri(relay_over_mlflow.url)
    mlflow.set_experiment("relay-artifacts-" + uuid.uuid4().hex[:8])
    payload = os.urandom(3 * 1024 * 1024)  # several chunks each way
    source = tmp_path / "weights.bin"
    source.write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source), artifact_path="model")
        mlflow.log_text("hello", "notes/readme.txt")
    client = MlflowClient()
    listed = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert listed == {"model/weights.bin"}
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "out"))
    assert (tmp_path / "out" / "model" / "weights.bin").read_bytes() == payload
    assert (tmp_path / "out" / "notes" / "readme.txt").read_text() == "hello"
    assert downloaded
