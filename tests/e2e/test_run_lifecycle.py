"""Run and experiment lifecycle through the stock mlflow client: delete, restore, and their effect on writes."""

from __future__ import annotations

import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from tests.e2e.test_client_training_loop import assert_client_error


def test_deleting_an_experiment_deletes_its_runs_and_restoring_brings_them_back(tracking_uri):
    client = MlflowClient()
    experiment_id = client.create_experiment("lifecycle-" + uuid.uuid4().hex)
    runs = [client.create_run(experiment_id) for _ in range(3)]
    run_ids = sorted(r.info.run_id for r in runs)
    client.log_metric(run_ids[0], "loss", 0.5, step=1)
    client.delete_run(run_ids[1])  # deleted before the experiment: comes back with it, as in MLflow

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == []
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert sorted(r.info.run_id for r in deleted) == run_ids
    # A deleted run can be read (data and history), not written.
    run = client.get_run(run_ids[0])
    assert run.info.lifecycle_stage == "deleted" and run.data.metrics == {"loss": 0.5}
    assert [m.value for m in client.get_metric_history(run_ids[0], "loss")] == [0.5]
    for write in (
        lambda: client.log_metric(run_ids[0], "loss", 0.4, step=2),
        lambda: client.log_param(run_ids[0], "lr", "0.1"),
        lambda: client.set_tag(run_ids[0], "t", "v"),
        lambda: client.log_batch(run_ids[0], params=[mlflow.entities.Param("p", "1")]),
    ):
        with pytest.raises(MlflowException) as raised:
            write()
        assert_client_error(raised.value, (
            f"The run {run_ids[0]} must be in the 'active' state. Current state is deleted."))
    with pytest.raises(MlflowException) as raised:
        client.create_run(experiment_id)
    assert_client_error(raised.value, (
        f"The experiment {experiment_id} must be in the 'active' state. Current state is deleted."))
    # The experiment's state is checked before the run's name, as MLflow does.
    with pytest.raises(MlflowException) as raised:
        client.create_run(experiment_id, run_name="a", tags={"mlflow.runName": "b"})
    assert_client_error(raised.value, (
        f"The experiment {experiment_id} must be in the 'active' state. Current state is deleted."))

    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    active = client.search_runs([experiment_id])
    assert sorted(r.info.run_id for r in active) == run_ids
    client.log_metric(run_ids[0], "loss", 0.4, step=2)
    assert [m.value for m in client.get_metric_history(run_ids[0], "loss")] == [0.5, 0.4]
    with pytest.raises(MlflowException) as raised:
        client.create_run(experiment_id, run_name="a", tags={"mlflow.runName": "b"})
    assert_client_error(raised.value, (
        "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values "
        "(run_name='a', mlflow.runName='b')."))
    assert len(client.search_runs([experiment_id])) == 3


def test_delete_and_restore_one_run_with_the_client(tracking_uri):
    client = MlflowClient()
    experiment_id = client.create_experiment("lifecycle-" + uuid.uuid4().hex)
    kept, deleted = (client.create_run(experiment_id).info.run_id for _ in range(2))
    client.delete_run(deleted)
    assert client.get_run(deleted).info.lifecycle_stage == "deleted"
    assert client.get_run(kept).info.lifecycle_stage == "active"
    every = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert sorted(r.info.run_id for r in every) == sorted([kept, deleted])
    client.restore_run(deleted)
    assert client.get_run(deleted).info.lifecycle_stage == "active"
    client.log_param(deleted, "lr", "0.1")
    assert client.get_run(deleted).data.params == {"lr": "0.1"}
    missing = uuid.uuid4().hex
    for call in (client.delete_run, client.restore_run):
        with pytest.raises(MlflowException) as raised:
            call(missing)
        assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert_client_error(raised.value, f"Run with id={missing} not found")
