"""Artifacts through the gateway with the stock mlflow client, as with `mlflow server --serve-artifacts`."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.server import GatewayProcess


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def artifact_gateway(database_url, artifact_root):
    """A gateway of this module's own, storing artifacts in a temporary directory."""
    process = GatewayProcess(database_url, "--artifacts-destination", str(artifact_root))
    yield process
    process.stop()


@pytest.fixture
def client_uri(artifact_gateway, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", artifact_gateway.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(artifact_gateway.url)
    yield artifact_gateway.url
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_run_artifacts_round_trip(client_uri, artifact_root, tmp_path):
    mlflow.set_experiment("artifacts-" + uuid.uuid4().hex[:8])
    source = tmp_path / "source"
    (source / "nested" / "deeper").mkdir(parents=True)
    (source / "top.txt").write_text("top level")
    (source / "nested" / "a.bin").write_bytes(bytes(range(256)) * 40)
    (source / "nested" / "deeper" / "b.csv").write_text("x,y\n1,2\n")
    single = tmp_path / "notes.md"
    single.write_text("# notes\n")
    with mlflow.start_run() as run:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(single), artifact_path="docs")
        mlflow.log_artifacts(str(source), artifact_path="folder")
        mlflow.log_text("hello text", "texts/hello.txt")
        mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config/params.json")
        mlflow.log_image(np.full((8, 6, 3), 200, dtype=np.uint8), "images/gray.png")
    client = MlflowClient()
    run_id = run.info.run_id

    top = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in top] == [
        ("config", True),
        ("docs", True),
        ("folder", True),
        ("images", True),
        ("notes.md", False),
        ("texts", True),
    ]
    assert top[4].file_size == len("# notes\n")
    nested = client.list_artifacts(run_id, "folder/nested")
    assert [(f.path, f.is_dir, f.file_size) for f in nested] == [
        ("folder/nested/a.bin", False, 10240),
        ("folder/nested/deeper", True, None),
    ]
    assert client.list_artifacts(run_id, "does/not/exist") == []

    target = tmp_path / "download"
    target.mkdir()
    folder = Path(client.download_artifacts(run_id, "folder", str(target)))
    assert (folder / "top.txt").read_text() == "top level"
    assert (folder / "nested" / "a.bin").read_bytes() == bytes(range(256)) * 40
    assert (folder / "nested" / "deeper" / "b.csv").read_text() == "x,y\n1,2\n"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/texts/hello.txt") == "hello text"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"lr": 0.1, "layers": [1, 2]}
    image = mlflow.artifacts.load_image(f"runs:/{run_id}/images/gray.png")
    assert image.size == (6, 8)
    assert image.getpixel((0, 0)) == (200, 200, 200)

    # The files sit under the destination at <experiment>/<run>/artifacts, with no upload leftovers.
    on_disk = artifact_root / run.info.experiment_id / run_id / "artifacts"
    assert (on_disk / "docs" / "notes.md").read_text() == "# notes\n"
    leftovers = [p for p in artifact_root.rglob("*") if p.name.startswith(".gateway-upload-")]
    assert leftovers == []


def test_pyfunc_model_logged_and_loaded(client_uri, tmp_path):
    class AddN(mlflow.pyfunc.PythonModel):
        def __init__(self, n):
            self.n = n

        def predict(self, context, model_input, params=None):
            return [value + self.n for value in model_input]

    mlflow.set_experiment("models-" + uuid.uuid4().hex[:8])
    with mlflow.start_run() as run:
        mlflow.log_param("n", 5)
        info = mlflow.pyfunc.log_model(name="adder", python_model=AddN(5), pip_requirements=[])
    assert info.model_id.startswith("m-")
    assert info.model_uri == f"models:/{info.model_id}"

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert list(loaded.predict([1, 2, 3])) == [6, 7, 8]
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/adder")
    assert list(by_run.predict([10])) == [15]

    client = MlflowClient()
    model = client.get_logged_model(info.model_id)
    assert model.name == "adder"
    assert model.status.name == "READY"
    assert model.source_run_id == run.info.run_id
    assert model.params == {"n": "5"}
    assert model.artifact_location.endswith(f"/models/{info.model_id}/artifacts")
    fetched = client.get_run(run.info.run_id)
    assert [(o.model_id, o.step) for o in fetched.outputs.model_outputs] == [(info.model_id, 0)]

    client.set_logged_model_tags(info.model_id, {"stage": "candidate", "team": "ml"})
    client.delete_logged_model_tag(info.model_id, "team")
    assert client.get_logged_model(info.model_id).tags["stage"] == "candidate"
    assert "team" not in client.get_logged_model(info.model_id).tags

    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string="name = 'adder'", output_format="list"
    )
    assert [m.model_id for m in found] == [info.model_id]
    assert (
        mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string="tags.stage = 'other'", output_format="list"
        )
        == []
    )


def test_logged_models_search_pages_and_delete(client_uri):
    experiment_id = mlflow.create_experiment("model-pages-" + uuid.uuid4().hex[:8])
    client = MlflowClient()
    created = [
        client.create_logged_model(experiment_id, name=f"model-{index}", params={"i": str(index)})
        for index in range(5)
    ]
    client.finalize_logged_model(created[1].model_id, "READY")
    page = client.search_logged_models([experiment_id], max_results=2, order_by=[{"field_name": "name", "ascending": True}])
    names = [m.name for m in page]
    while page.token:
        page = client.search_logged_models(
            [experiment_id], max_results=2, page_token=page.token, order_by=[{"field_name": "name", "ascending": True}]
        )
        names += [m.name for m in page]
    assert names == [f"model-{index}" for index in range(5)]
    ready = client.search_logged_models([experiment_id], filter_string="status = 'READY'")
    assert [m.model_id for m in ready] == [created[1].model_id]
    by_param = client.search_logged_models([experiment_id], filter_string="params.i LIKE '3%'")
    assert [m.model_id for m in by_param] == [created[3].model_id]

    client.delete_logged_model(created[0].model_id)
    with pytest.raises(mlflow.exceptions.MlflowException) as error:
        client.get_logged_model(created[0].model_id)
    assert error.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"Logged model with ID '{created[0].model_id}' not found." in error.value.message
    remaining = client.search_logged_models([experiment_id])
    assert len(remaining) == 4
    assert sorted(m.name for m in remaining) == [f"model-{i}" for i in range(1, 5)]


def test_figure_and_tables_round_trip(client_uri):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    from matplotlib import pyplot

    mlflow.set_experiment("tables-" + uuid.uuid4().hex[:8])
    figure, axes = pyplot.subplots(figsize=(4, 3), dpi=50)
    axes.plot([0, 1, 2], [0, 1, 4])
    first_table = pd.DataFrame({"step": [0, 1, 2], "loss": [0.9, 0.5, 0.25], "split": ["a", "b", "c"]})
    with mlflow.start_run() as first:
        mlflow.log_figure(figure, "plots/curve.png")
        mlflow.log_table(first_table, "eval/results.json")
    pyplot.close(figure)
    with mlflow.start_run() as second:
        mlflow.log_table({"step": [3], "loss": [0.125], "split": ["d"]}, "eval/results.json")
    with mlflow.start_run():
        mlflow.log_text("not a table", "eval/other.txt")

    image = mlflow.artifacts.load_image(f"runs:/{first.info.run_id}/plots/curve.png")
    assert image.size == (200, 150)
    # The figure is not blank: the plotted line differs from the background.
    assert len(set(image.convert("RGB").getdata())) > 2

    loaded = mlflow.load_table("eval/results.json", run_ids=[first.info.run_id])
    pd.testing.assert_frame_equal(loaded, first_table)
    # Without run ids, load_table finds the runs by their logged-artifacts tag (runs/search with LIKE).
    both = mlflow.load_table("eval/results.json", extra_columns=["run_id"])
    assert sorted(zip(both["run_id"], both["step"], both["loss"])) == sorted(
        [(first.info.run_id, 0, 0.9), (first.info.run_id, 1, 0.5), (first.info.run_id, 2, 0.25),
         (second.info.run_id, 3, 0.125)]
    )
