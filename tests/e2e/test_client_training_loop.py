"""The stock mlflow client drives the gateway as it would `mlflow server`."""

from __future__ import annotations

import math
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def assert_client_error(error: MlflowException, message: str) -> None:
    """The client prefixes the server's message with its code and may append a hint."""
    assert error.message.startswith(f"{error.error_code}: {message}"), error.message


def test_training_loop_round_trip(tracking_uri):
    experiment_name = "loop-" + uuid.uuid4().hex[:8]
    experiment = mlflow.set_experiment(experiment_name)
    assert experiment.name == experiment_name
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": 0.01, "layers": 3})
        mlflow.log_param("optimizer", "adam")
        mlflow.set_tag("team", "vision")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"acc": step / 10, "f1": step / 20}, step=step)
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_metric", 7.5)
    client = MlflowClient()

    run = client.get_run(parent.info.run_id)
    assert run.info.run_name == "parent"
    assert run.info.status == "FINISHED"
    assert run.info.end_time is not None
    assert run.info.experiment_id == experiment.experiment_id
    assert run.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert run.data.metrics == {"loss": 0.2, "acc": 0.4, "f1": 0.2}
    assert run.data.tags["team"] == "vision"
    assert run.data.tags["mlflow.runName"] == "parent"

    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]

    child_run = client.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child_run.data.metrics == {"child_metric": 7.5}

    frame = mlflow.search_runs(experiment_ids=[experiment.experiment_id])
    assert set(frame["run_id"]) == {parent.info.run_id, child.info.run_id}
    parent_row = frame[frame["run_id"] == parent.info.run_id].iloc[0]
    assert parent_row["metrics.loss"] == 0.2
    assert parent_row["params.optimizer"] == "adam"
    assert parent_row["tags.team"] == "vision"

    found = client.search_runs([experiment.experiment_id], filter_string="metrics.loss < 0.5 and params.optimizer = 'adam'")
    assert [r.info.run_id for r in found] == [parent.info.run_id]


def test_nan_and_infinity_read_back_as_mlflow_stores_them(tracking_uri):
    mlflow.set_experiment("special-values")
    with mlflow.start_run() as run:
        mlflow.log_metric("nan", float("nan"), step=0)
        mlflow.log_metric("inf", float("inf"), step=0)
        mlflow.log_metric("ninf", float("-inf"), step=0)
    client = MlflowClient()
    data = client.get_run(run.info.run_id).data.metrics
    assert math.isnan(data["nan"])
    assert data["inf"] == 1.7976931348623157e308
    assert data["ninf"] == -1.7976931348623157e308
    [point] = client.get_metric_history(run.info.run_id, "nan")
    assert math.isnan(point.value)


def test_identical_point_logged_twice_is_stored_once(tracking_uri):
    mlflow.set_experiment("duplicates")
    client = MlflowClient()
    with mlflow.start_run() as run:
        for _ in range(2):
            client.log_metric(run.info.run_id, "m", 1.5, timestamp=1000, step=3)
        client.log_metric(run.info.run_id, "m", 1.5, timestamp=1001, step=3)
    history = client.get_metric_history(run.info.run_id, "m")
    assert [(m.value, m.timestamp, m.step) for m in history] == [(1.5, 1000, 3), (1.5, 1001, 3)]


def test_param_overwrite_is_refused_with_mlflow_error(tracking_uri):
    mlflow.set_experiment("param-write-once")
    with mlflow.start_run() as run:
        mlflow.log_param("a", "1")
        mlflow.log_param("a", "1")  # the same value again is fine
        with pytest.raises(MlflowException) as raised:
            mlflow.log_param("a", "2")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert_client_error(raised.value, (
        "Changing param values is not allowed. Param with key='a' was already logged with value='1' "
        f"for run ID='{run.info.run_id}'. Attempted logging new value '2'."
    ))
    assert MlflowClient().get_run(run.info.run_id).data.params == {"a": "1"}


def test_batch_param_conflict_lists_every_key_and_stores_nothing_of_the_batch(tracking_uri):
    mlflow.set_experiment("param-write-once")
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_params({"a": "1", "b": "2"})
        with pytest.raises(MlflowException) as raised:
            mlflow.log_params({"a": "3", "b": "2", "c": "new"})
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert_client_error(raised.value, (
        "Changing param values is not allowed. Params were already logged="
        f"'[{{'key': 'a', 'old_value': '1', 'new_value': '3'}}]' for run ID='{run.info.run_id}'."
    ))
    assert client.get_run(run.info.run_id).data.params == {"a": "1", "b": "2"}


def test_unknown_run_is_resource_does_not_exist(tracking_uri):
    missing = uuid.uuid4().hex
    with pytest.raises(MlflowException) as raised:
        MlflowClient().log_metric(missing, "m", 1.0)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert_client_error(raised.value, f"Run with id={missing} not found")
    with pytest.raises(MlflowException) as raised:
        MlflowClient().get_run(missing)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_batch_over_the_limits_is_refused(tracking_uri):
    from mlflow.entities import Metric

    mlflow.set_experiment("limits")
    client = MlflowClient()
    # MlflowClient.log_batch splits big batches itself; its REST store sends one request as given.
    rest_store = client._tracking_client.store
    with mlflow.start_run() as run:
        metrics = [Metric(f"m{i}", 1.0, 1000, 0) for i in range(1001)]
        with pytest.raises(MlflowException) as raised:
            rest_store.log_batch(run.info.run_id, metrics=metrics, params=[], tags=[])
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert_client_error(raised.value, (
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
        "Please split up metrics across multiple requests and try again."
    ))
    assert client.get_run(run.info.run_id).data.metrics == {}


def test_writes_to_a_deleted_run_are_refused(tracking_uri):
    mlflow.set_experiment("deleted-run")
    client = MlflowClient()
    with mlflow.start_run() as run:
        pass
    client.delete_run(run.info.run_id)
    with pytest.raises(MlflowException) as raised:
        client.log_metric(run.info.run_id, "m", 1.0)
    assert_client_error(raised.value, (
        f"The run {run.info.run_id} must be in the 'active' state. Current state is deleted."
    ))
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    client.restore_run(run.info.run_id)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
