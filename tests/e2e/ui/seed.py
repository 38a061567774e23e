"""What the browser tests look at: experiments, runs, artifacts and registered models,
written through the stock `mlflow` client as a user's training code would write them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

START_MS = 1_700_000_000_000
RUN_NAMES = ("alpha", "beta", "gamma")


@dataclasses.dataclass(frozen=True)
class Seeded:
    experiment_id: str
    other_experiment_id: str
    runs: dict[str, str]  # run name -> run id
    model_name: str
    logged_model_id: str


def seed(tracking_uri: str, folder: Path) -> Seeded:
    """Write the seeded story to the server at ``tracking_uri``; files are made in ``folder``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from PIL import Image

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("ui-demo", tags={"team": "vision"})
    other_experiment_id = client.create_experiment("ui-other")
    runs: dict[str, str] = {}
    for index, name in enumerate(RUN_NAMES):
        run = client.create_run(experiment_id, run_name=name, tags={"stage": f"s{index}"}, start_time=START_MS + index)
        run_id = run.info.run_id
        client.log_param(run_id, "lr", str(0.1 * (index + 1)))
        client.log_param(run_id, "batch", str(32 * (index + 1)))
        client.log_param(run_id, "optimizer", "adam")  # the same in every run: a row "show diff only" hides
        for step in range(10):
            timestamp = START_MS + step * 1000
            client.log_metric(run_id, "loss", 1.0 / (step + 1 + index), step=step, timestamp=timestamp)
            client.log_metric(run_id, "accuracy", 0.5 + 0.04 * step + 0.01 * index, step=step, timestamp=timestamp)
        client.set_terminated(run_id, end_time=START_MS + 60_000)
        runs[name] = run_id
    delta = client.create_run(other_experiment_id, run_name="delta", start_time=START_MS)
    client.log_param(delta.info.run_id, "lr", "0.5")
    client.log_param(delta.info.run_id, "optimizer", "adam")
    client.log_metric(delta.info.run_id, "loss", 0.7, step=0, timestamp=START_MS)
    client.set_terminated(delta.info.run_id, end_time=START_MS + 60_000)
    runs["delta"] = delta.info.run_id

    alpha = runs["alpha"]
    client.set_tag(alpha, "mlflow.note.content", "Alpha run description")
    notes = folder / "notes.txt"
    notes.write_text("hello artifacts\n")
    client.log_artifact(alpha, str(notes))
    image = folder / "plot.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    client.log_artifact(alpha, str(image))

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    # The fluent API checks a resumed run against its active experiment, which another
    # test of the session may have set: make it alpha's own.
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_id=alpha):
        # The signature is kept in the MLmodel file; the model version page shows it from there.
        signature = ModelSignature(Schema([ColSpec("double", "pixels")]), Schema([ColSpec("double", "label")]))
        model = mlflow.pyfunc.log_model(name="model", python_model=Echo(), signature=signature)
    model_name = "ui-model"
    first = mlflow.register_model(model.model_uri, model_name)
    second = mlflow.register_model(model.model_uri, model_name)
    client.set_registered_model_alias(model_name, "champion", first.version)
    client.transition_model_version_stage(model_name, second.version, "Staging")
    return Seeded(experiment_id, other_experiment_id, runs, model_name, model.model_id)
