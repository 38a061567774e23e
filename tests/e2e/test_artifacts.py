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


def test_logged_models_search_by_dataset(client_uri):
    import pandas as pd
    import requests

    experiment_id = mlflow.set_experiment("model-datasets-" + uuid.uuid4().hex[:8]).experiment_id
    client = MlflowClient()
    eval_v1 = mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2]}), name="eval")
    eval_v2 = mlflow.data.from_pandas(pd.DataFrame({"x": [3, 4, 5]}), name="eval")
    train = mlflow.data.from_pandas(pd.DataFrame({"x": [6]}), name="train")
    assert eval_v1.digest != eval_v2.digest
    a, b, c = (client.create_logged_model(experiment_id, name=name) for name in ("a", "b", "c"))
    with mlflow.start_run():
        mlflow.log_metric("acc", 0.9, model_id=a.model_id, dataset=eval_v1, step=1, timestamp=1_000)
        mlflow.log_metric("acc", 0.5, model_id=a.model_id, dataset=train, step=1, timestamp=2_000)
        mlflow.log_metric("acc", 0.6, model_id=b.model_id, dataset=eval_v1, step=1, timestamp=1_000)
        mlflow.log_metric("acc", 0.95, model_id=b.model_id, dataset=train, step=1, timestamp=2_000)
        mlflow.log_metric("acc", 0.4, model_id=b.model_id, dataset=eval_v2, step=0, timestamp=3_000)
        mlflow.log_metric("acc", 0.99, model_id=c.model_id, step=1, timestamp=1_000)

    def names(filter_string=None, datasets=None, order_by=None):
        found = client.search_logged_models(
            [experiment_id], filter_string=filter_string, datasets=datasets, order_by=order_by
        )
        return [m.name for m in found] if order_by else sorted(m.name for m in found)

    eval_1 = {"dataset_name": "eval", "dataset_digest": eval_v1.digest}
    # A metric clause matches any point of the key; datasets narrow the points it looks at.
    assert names("metrics.acc > 0.8") == ["a", "b", "c"]
    assert names("metrics.acc > 0.8", [eval_1]) == ["a"]
    assert names("metrics.acc > 0.8", [{"dataset_name": "train"}]) == ["b"]
    assert names("metrics.acc < 0.55", [eval_1, {"dataset_name": "train"}]) == ["a"]
    assert names("metrics.acc < 0.45", [{"dataset_name": "eval", "dataset_digest": eval_v2.digest}]) == ["b"]
    # Without a metric clause, datasets keep the models with any metric on them; no digest takes every digest.
    assert names(datasets=[{"dataset_name": "eval"}]) == ["a", "b"]
    assert names(datasets=[{"dataset_name": "eval", "dataset_digest": eval_v2.digest}]) == ["b"]
    assert names(datasets=[{"dataset_name": "holdout"}]) == []
    assert names("name = 'a'", [{"dataset_name": "train"}]) == ["a"]
    # Order by a metric on one dataset; models without such a point come last.
    ascending = [{"field_name": "metrics.acc", "ascending": True, "dataset_name": "train"}]
    assert names(order_by=ascending) == ["a", "b", "c"]
    descending = [{"field_name": "metrics.acc", "ascending": False, "dataset_name": "eval",
                   "dataset_digest": eval_v1.digest}]
    assert names(order_by=descending) == ["a", "b", "c"]
    # The latest point is the one with the greatest timestamp, even at a lower step (b: 0.4).
    assert names(order_by=[{"field_name": "metrics.acc", "ascending": False}]) == ["c", "a", "b"]

    page = client.search_logged_models([experiment_id], datasets=[{"dataset_name": "eval"}], max_results=1)
    rest = client.search_logged_models(
        [experiment_id], datasets=[{"dataset_name": "eval"}], max_results=1, page_token=page.token
    )
    assert sorted([page[0].name, rest[0].name]) == ["a", "b"] and rest.token is None

    search = f"{client_uri}/api/2.0/mlflow/logged-models/search"
    answer = requests.post(search, json={"experiment_ids": [experiment_id], "datasets": [{"dataset_digest": "x"}]},
                           timeout=30)
    assert (answer.status_code, answer.json()) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE",
         "message": "`dataset_name` in the `datasets` clause must be specified."},
    )
    answer = requests.post(search, json={"experiment_ids": [experiment_id], "datasets": [{"dataset_name": "train"}],
                                         "page_token": page.token}, timeout=30)
    assert (answer.status_code, answer.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    answer = requests.post(search, json={"experiment_ids": [experiment_id],
                                         "order_by": [{"field_name": "params.lr"}]}, timeout=30)
    assert answer.json()["message"] == "Invalid order by field name: params.lr. Only metrics are supported."
