"""databricks-sdk's experiments API as a second real client, pointed at the gateway."""

from __future__ import annotations

import os
import uuid

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist
from databricks.sdk.service import ml


@pytest.fixture
def workspace(gateway, tmp_path, monkeypatch) -> WorkspaceClient:
    """A WorkspaceClient that talks to the gateway only: token auth, no profile file, no environment."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    config = Config(
        host=gateway.url,
        token="dummy-token",
        auth_type="pat",
        config_file=str(tmp_path / "no-such-databrickscfg"),
        retry_timeout_seconds=30,
        http_timeout_seconds=30,
    )
    return WorkspaceClient(config=config)


def new_experiment(workspace: WorkspaceClient) -> str:
    return workspace.experiments.create_experiment(name="sdk-" + uuid.uuid4().hex).experiment_id


def test_log_and_read_back_through_the_sdk(workspace):
    experiments = workspace.experiments
    experiment_id = new_experiment(workspace)
    run = experiments.create_run(
        experiment_id=experiment_id, run_name="sdk-run", start_time=1_700_000_000_000,
        tags=[ml.RunTag(key="team", value="vision")],
    ).run
    run_id = run.info.run_id
    assert run.info.experiment_id == experiment_id and run.info.run_name == "sdk-run"
    assert run.info.status == ml.RunInfoStatus.RUNNING and run.info.lifecycle_stage == "active"

    experiments.log_metric(key="loss", value=0.5, timestamp=1000, step=1, run_id=run_id)
    experiments.log_metric(key="loss", value=0.25, timestamp=1001, step=2, run_id=run_id)
    experiments.log_param(key="lr", value="0.01", run_id=run_id)
    experiments.log_batch(
        run_id=run_id,
        metrics=[ml.Metric(key="acc", value=0.9, timestamp=1002, step=2)],
        params=[ml.Param(key="layers", value="3")],
        tags=[ml.RunTag(key="stage", value="train")],
    )
    experiments.set_tag(key="owner", value="sdk", run_id=run_id)

    got = experiments.get_run(run_id=run_id).run
    metrics = {m.key: (m.value, m.timestamp, m.step) for m in got.data.metrics}
    assert metrics == {"loss": (0.25, 1001, 2), "acc": (0.9, 1002, 2)}
    assert {p.key: p.value for p in got.data.params} == {"lr": "0.01", "layers": "3"}
    assert {t.key: t.value for t in got.data.tags} == {
        "team": "vision", "mlflow.runName": "sdk-run", "stage": "train", "owner": "sdk"}

    other = experiments.create_run(experiment_id=experiment_id, start_time=1_700_000_000_001).run.info.run_id
    experiments.log_metric(key="loss", value=0.75, timestamp=1000, step=1, run_id=other)
    found = list(experiments.search_runs(experiment_ids=[experiment_id], filter="metrics.loss < 0.5"))
    assert [r.info.run_id for r in found] == [run_id]
    ordered = list(experiments.search_runs(experiment_ids=[experiment_id], order_by=["metrics.loss DESC"]))
    assert [r.info.run_id for r in ordered] == [other, run_id]
    # The SDK pages through every result with the page token.
    paged = list(experiments.search_runs(experiment_ids=[experiment_id], max_results=1))
    assert sorted(r.info.run_id for r in paged) == sorted([run_id, other])


def test_sdk_sees_mlflow_errors(workspace):
    experiments = workspace.experiments
    run_id = experiments.create_run(experiment_id=new_experiment(workspace)).run.info.run_id
    experiments.log_param(key="lr", value="0.1", run_id=run_id)
    with pytest.raises(InvalidParameterValue) as raised:
        experiments.log_param(key="lr", value="0.2", run_id=run_id)
    assert str(raised.value) == (
        "Changing param values is not allowed. Param with key='lr' was already logged with value='0.1' "
        f"for run ID='{run_id}'. Attempted logging new value '0.2'.")
    missing = uuid.uuid4().hex
    with pytest.raises(ResourceDoesNotExist) as raised:
        experiments.get_run(run_id=missing)
    assert str(raised.value) == f"Run with id={missing} not found"


def test_bulk_delete_and_restore_runs_through_the_sdk(workspace):
    experiments = workspace.experiments
    experiment_id = new_experiment(workspace)
    run_ids = [experiments.create_run(experiment_id=experiment_id, start_time=1000 + i).run.info.run_id
               for i in range(5)]

    assert experiments.delete_runs(experiment_id, 1002, max_runs=2).runs_deleted == 2
    stages = [experiments.get_run(run_id=r).run.info.lifecycle_stage for r in run_ids]
    assert stages == ["deleted", "deleted", "active", "active", "active"]
    assert experiments.delete_runs(experiment_id, 1003).runs_deleted == 2
    with pytest.raises(InvalidParameterValue):
        experiments.log_metric(key="m", value=1.0, timestamp=1, run_id=run_ids[0])
    deleted = list(experiments.search_runs(experiment_ids=[experiment_id], run_view_type=ml.ViewType.DELETED_ONLY))
    assert sorted(r.info.run_id for r in deleted) == sorted(run_ids[:4])

    assert experiments.restore_runs(experiment_id, 0, max_runs=3).runs_restored == 3
    assert experiments.restore_runs(experiment_id, 0).runs_restored == 1
    assert experiments.restore_runs(experiment_id, 0).runs_restored == 0
    active = list(experiments.search_runs(experiment_ids=[experiment_id]))
    assert sorted(r.info.run_id for r in active) == sorted(run_ids)

    for bad in (0, -1, 10001):
        for call in (experiments.delete_runs, experiments.restore_runs):
            with pytest.raises(InvalidParameterValue) as raised:
                call(experiment_id, 5000, max_runs=bad)
            assert str(raised.value) == (
                f"Invalid value {bad} for parameter 'max_runs' supplied: max_runs must be between 1 and 10000.")
    assert experiments.delete_runs(experiment_id, 5000, max_runs=10000).runs_deleted == 5
    with pytest.raises(ResourceDoesNotExist) as raised:
        experiments.delete_runs("987654321", 5000)
    assert str(raised.value) == "No Experiment with id=987654321 exists"
