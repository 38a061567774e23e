"""`gateway gc` removes the files of the runs and logged models it removes, wherever they live.

Files are logged with the stock client: through the gateway's proxy into its
--artifacts-destination, and straight into an experiment's own local folder or
S3 bucket (moto's server on 127.0.0.1). gc runs as a real subprocess.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg
import boto3
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException

from tests.e2e.test_artifacts_s3 import CREDENTIALS, _boto_credentials
from tests.e2e.test_gc import DAY_MS, age, gc, rows_naming
from tests.server import GatewayProcess, free_port

pytestmark = pytest.mark.timeout(240)

S3_BUCKET = "gc-own-location"


@pytest.fixture
def destination(tmp_path) -> Path:
    return tmp_path / "destination"


@pytest.fixture
def gateway(fresh_database_url, destination):
    process = GatewayProcess(fresh_database_url, "--artifacts-destination", str(destination))
    yield process
    process.stop()


@pytest.fixture
def client(gateway, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(gateway.url)
    return MlflowClient(gateway.url)


def new_experiment(client: MlflowClient, artifact_location: str | None = None) -> str:
    return client.create_experiment("gc-files-" + uuid.uuid4().hex[:10], artifact_location)


def run_with_files(client: MlflowClient, experiment_id: str, tmp_path: Path) -> str:
    """A run with a metric, a param, a text file and a binary checkpoint, logged by the stock client."""
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.5, step=1)
    client.log_param(run_id, "lr", "0.1")
    client.log_text(run_id, "loss went down\n", "notes/summary.txt")
    checkpoint = tmp_path / f"weights-{run_id}.bin"
    checkpoint.write_bytes(b"\x00\x01" * 1000)
    client.log_artifact(run_id, str(checkpoint), "checkpoints")
    return run_id


def model_with_files(client: MlflowClient, experiment_id: str, tmp_path: Path, source_run_id: str | None = None):
    """A READY logged model with a param, a tag and an MLmodel file uploaded by the stock client."""
    model = client.create_logged_model(
        experiment_id, name="classifier", source_run_id=source_run_id, params={"depth": "3"}, tags={"team": "vision"}
    )
    folder = tmp_path / model.model_id
    folder.mkdir()
    (folder / "MLmodel").write_text("artifact_path: classifier\n")
    client.log_model_artifacts(model.model_id, str(folder))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model


async def age_models(database_url: str, model_ids: list[str], days: int = 31) -> None:
    """Make logged models' deletions look ``days`` old."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE logged_models SET last_updated_timestamp_ms = $2 WHERE model_id = ANY($1::text[])",
            model_ids,
            int(time.time() * 1000) - days * DAY_MS,
        )
    finally:
        await conn.close()


async def pending_removals(database_url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT owner_id, owner_kind FROM gc_artifact_removals ORDER BY owner_id")
        return [(row["owner_id"], row["owner_kind"]) for row in rows]
    finally:
        await conn.close()


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


async def test_gc_removes_files_of_removed_runs_and_models_and_leaves_live_ones(
    client, fresh_database_url, destination, tmp_path
):
    proxied = new_experiment(client)
    own = tmp_path / "own location"
    local = new_experiment(client, str(own))
    doomed_runs = [run_with_files(client, proxied, tmp_path), run_with_files(client, local, tmp_path)]
    live_runs = [run_with_files(client, proxied, tmp_path), run_with_files(client, local, tmp_path)]
    doomed_models = [
        model_with_files(client, proxied, tmp_path, source_run_id=live_runs[0]).model_id,
        model_with_files(client, local, tmp_path).model_id,
    ]
    live_model = model_with_files(client, proxied, tmp_path).model_id
    recently_deleted_model = model_with_files(client, proxied, tmp_path).model_id
    # The removed model was an output of a run that is removed and of one that stays.
    client.log_outputs(doomed_runs[0], [LoggedModelOutput(doomed_models[0], 0)])
    client.log_outputs(live_runs[0], [LoggedModelOutput(doomed_models[0], 1), LoggedModelOutput(live_model, 2)])
    for run_id in doomed_runs:
        client.delete_run(run_id)
    for model_id in [*doomed_models, recently_deleted_model]:
        client.delete_logged_model(model_id)
    await age(fresh_database_url, runs=doomed_runs)
    await age_models(fresh_database_url, doomed_models)

    run_folders = {
        doomed_runs[0]: destination / proxied / doomed_runs[0],
        doomed_runs[1]: own / doomed_runs[1],
        live_runs[0]: destination / proxied / live_runs[0],
        live_runs[1]: own / live_runs[1],
    }
    model_folders = {
        doomed_models[0]: destination / proxied / "models" / doomed_models[0],
        doomed_models[1]: own / "models" / doomed_models[1],
        live_model: destination / proxied / "models" / live_model,
        recently_deleted_model: destination / proxied / "models" / recently_deleted_model,
    }
    run_files = ["artifacts/checkpoints/weights-{}.bin", "artifacts/notes/summary.txt"]
    for run_id, folder in run_folders.items():
        assert files_under(folder) == [name.format(run_id) for name in run_files]
    for folder in model_folders.values():
        assert files_under(folder) == ["artifacts/MLmodel"]
    run_rows = await rows_naming(fresh_database_url, "run_id", doomed_runs)
    model_rows = await rows_naming(fresh_database_url, "model_id", doomed_models)
    live_before = [client.get_run(run_id).to_dictionary() for run_id in live_runs]

    done = gc(fresh_database_url, "--older-than", "30d", "--artifacts-destination", str(destination))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith(
        f" ({run_rows['metric_points']} metric points, {run_rows['metric_summaries']} metric summaries, "
        f"{run_rows['params']} params, {run_rows['run_tags']} tags, 0 inputs, 1 outputs, "
        f"{model_rows['logged_model_params']} model params, {model_rows['logged_model_tags']} model tags); "
        "artifacts of 4 runs and models removed, 0 failed"
    )
    assert done.stdout.startswith("gc: removed 2 runs, 2 logged models and 0 experiments deleted before ")
    assert (run_rows["params"], model_rows["logged_model_params"]) == (2, 2)

    # The removed runs' and models' folders are gone; every other file is where it was.
    for gone in [*doomed_runs, *doomed_models]:
        folder = run_folders.get(gone) or model_folders[gone]
        assert not folder.exists(), gone
    for run_id in live_runs:
        assert files_under(run_folders[run_id]) == [name.format(run_id) for name in run_files]
        assert [f.path for f in client.list_artifacts(run_id)] == ["checkpoints", "notes"]
    downloaded = client.download_artifacts(live_runs[0], "notes/summary.txt", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == "loss went down\n"
    for model_id in (live_model, recently_deleted_model):
        assert files_under(model_folders[model_id]) == ["artifacts/MLmodel"]

    # Rows: nothing names a removed run; of a removed model only a live run's output is left.
    assert set((await rows_naming(fresh_database_url, "run_id", doomed_runs)).values()) == {0}
    assert await rows_naming(fresh_database_url, "model_id", doomed_models) == {
        "logged_model_params": 0, "logged_model_tags": 0, "logged_models": 0, "metric_points": 0,
        "run_model_inputs": 0, "run_model_outputs": 1,
    }
    assert [client.get_run(run_id).to_dictionary() for run_id in live_runs] == live_before
    assert client.get_logged_model(live_model).params == {"depth": "3"}
    assert await pending_removals(fresh_database_url) == []

    # The recently deleted model goes once it is old enough; the destination itself stays.
    done = gc(fresh_database_url, "--artifacts-destination", str(destination))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gc: removed 0 runs, 1 logged models and 0 experiments deleted before ")
    assert not model_folders[recently_deleted_model].exists()
    assert files_under(model_folders[live_model]) == ["artifacts/MLmodel"]
    assert destination.is_dir()


async def test_an_experiment_removed_by_gc_takes_its_logged_models_and_their_files(
    client, fresh_database_url, destination, tmp_path
):
    experiment_id = new_experiment(client)
    run_id = run_with_files(client, experiment_id, tmp_path)
    active = model_with_files(client, experiment_id, tmp_path, source_run_id=run_id).model_id
    deleted = model_with_files(client, experiment_id, tmp_path).model_id
    client.delete_logged_model(deleted)
    other_experiment = new_experiment(client)
    bystander = model_with_files(client, other_experiment, tmp_path).model_id
    client.delete_experiment(experiment_id)
    await age(fresh_database_url, experiments=[experiment_id])

    # One run or model per batch: the run, then a model, then the last model with the experiment.
    done = gc(fresh_database_url, "--older-than", "30d", "--batch-size", "1",
              "--artifacts-destination", str(destination))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gc: removed 1 runs, 2 logged models and 1 experiments deleted before ")
    assert done.stdout.rstrip().endswith("2 model params, 2 model tags); artifacts of 3 runs and models removed, 0 failed")
    assert set((await rows_naming(fresh_database_url, "experiment_id", [int(experiment_id)])).values()) == {0}
    assert set((await rows_naming(fresh_database_url, "model_id", [active, deleted])).values()) == {0}
    assert set((await rows_naming(fresh_database_url, "run_id", [run_id])).values()) == {0}
    assert files_under(destination / experiment_id) == []
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_logged_model(active)
    assert files_under(destination / other_experiment) == ["models/" + bystander + "/artifacts/MLmodel"]
    assert client.get_logged_model(bystander).tags == {"team": "vision"}


@pytest.fixture
def s3_endpoint():
    from moto import server as moto_server

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_files_gc_cannot_remove_are_reported_and_retried_by_the_next_gc(
    client, fresh_database_url, destination, s3_endpoint, monkeypatch
):
    """An unsupported scheme is reported once; unreachable storage is reported and retried until it succeeds."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_boto_credentials())
    s3.create_bucket(Bucket=S3_BUCKET)
    for name, value in {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    in_s3 = client.create_run(new_experiment(client, f"s3://{S3_BUCKET}/team")).info.run_id
    client.log_text(in_s3, "weights", "model/weights.txt")
    elsewhere = client.create_run(new_experiment(client, "gs://some-bucket/team")).info.run_id
    for run_id in (in_s3, elsewhere):
        client.delete_run(run_id)

    def stored_keys() -> list[str]:
        return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []))

    assert stored_keys() == [f"team/{in_s3}/artifacts/model/weights.txt"]
    unreachable = {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                   "AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "1"}
    done = gc(fresh_database_url, "--artifacts-destination", str(destination), env=unreachable)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gc: removed 2 runs, 0 logged models and 0 experiments deleted before ")
    assert done.stdout.rstrip().endswith("artifacts of 0 runs and models removed, 2 failed")
    assert f"artifacts of run {elsewhere} at gs://some-bucket/team/{elsewhere}/artifacts not removed: " \
           "Could not find a registered artifact repository" in done.stderr
    assert "remove them by hand" in done.stderr
    assert f"artifacts of run {in_s3} at s3://{S3_BUCKET}/team/{in_s3}/artifacts not removed: S3 " in done.stderr
    assert "the next gc retries" in done.stderr
    assert "gc: 2 runs, 0 logged models and 0 experiments to remove; files of 0 more left by an earlier gc" \
        in done.stderr
    # The rows are gone; what S3 holds is still known, and only that.
    assert set((await rows_naming(fresh_database_url, "run_id", [in_s3, elsewhere])).values()) == {0}
    assert await pending_removals(fresh_database_url) == [(in_s3, "run")]
    assert stored_keys() == [f"team/{in_s3}/artifacts/model/weights.txt"]

    done = gc(fresh_database_url, "--artifacts-destination", str(destination),
              env={**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint})
    assert done.returncode == 0, done.stderr
    assert "files of 1 more left by an earlier gc" in done.stderr
    assert done.stdout.startswith("gc: removed 0 runs, 0 logged models and 0 experiments deleted before ")
    assert done.stdout.rstrip().endswith("artifacts of 1 runs and models removed, 0 failed")
    assert stored_keys() == []
    assert await pending_removals(fresh_database_url) == []
