"""MLflow stores for the import tests: one written through a real `mlflow server` and the stock
client, and the REST answers of two servers compared object by object."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

# Points of each long history (written by log_batch, 1000 a call).
LONG_HISTORY = 3000


def write_store(url: str) -> dict:
    """Experiments, runs (long histories, NaN and infinities, deleted and nested runs), datasets,
    logged models, the registry (stages, aliases, a deleted version) and a prompt, through
    ``mlflow server`` at ``url``. Returns what the comparison needs to ask about."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag, LoggedModelInput, LoggedModelOutput, Metric, Param, RunTag

    # The client only: the fluent API keeps an active experiment and run in globals other tests set.
    client = MlflowClient(url)
    vision = client.create_experiment("vision", tags={"team": "cv", "note": "it's"})
    nlp = client.create_experiment("nlp")
    retired = client.create_experiment("retired")
    runs: list[str] = []
    for index in range(4):
        run = client.create_run(vision if index < 3 else nlp, run_name=f"train-{index}", start_time=1_000 + index,
                                tags={"mlflow.user": "alice" if index % 2 else "bob", "lr-schedule": "cosine"})
        run_id = run.info.run_id
        runs.append(run_id)
        for start in range(0, LONG_HISTORY, 1000):
            client.log_batch(run_id, metrics=[
                Metric("loss", math.nan if step == 7 else 1.0 / (step + 1 + index), 10_000 + step, step)
                for step in range(start, start + 1000)
            ])
        client.log_batch(run_id, metrics=[Metric("acc", 0.1 * index, 5, 0), Metric("acc", math.inf, 6, 1),
                                          Metric("acc", -math.inf, 6, 1), Metric("acc", 0.5, 6, 1),
                                          Metric("acc", 0.5, 6, 2)],
                         params=[Param("lr", str(0.1 / (index + 1))), Param("opt", "adam" if index else "sgd")],
                         tags=[RunTag("stage", "dev" if index % 2 else "prod")])
    child = client.create_run(vision, run_name="child", tags={"mlflow.parentRunId": runs[0]})
    client.log_metric(child.info.run_id, "loss", 0.3, step=0, timestamp=1)
    runs.append(child.info.run_id)
    client.set_terminated(runs[1], "FINISHED", end_time=90_000)
    client.set_terminated(runs[2], "FAILED", end_time=91_000)
    client.delete_run(runs[2])
    gone = client.create_run(retired, run_name="old")
    runs.append(gone.info.run_id)
    client.delete_experiment(retired)

    train = mlflow.data.from_pandas(pd.DataFrame({"a": [1, 2]}), source="file:///data/train.csv", name="train")
    evaluation = mlflow.data.from_pandas(pd.DataFrame({"b": [3]}), source="file:///data/eval.csv", name="eval")
    client.log_inputs(runs[3], datasets=[
        DatasetInput(train._to_mlflow_entity(), [InputTag("mlflow.data.context", "training"), InputTag("split", "a")]),
        DatasetInput(evaluation._to_mlflow_entity(), [InputTag("mlflow.data.context", "eval")]),
    ])
    model = client.create_logged_model(nlp, name="classifier", source_run_id=runs[3], params={"depth": "3"},
                                       tags={"owner": "bob"})
    client.log_metric(runs[3], "val_loss", 0.25, step=2, timestamp=20, model_id=model.model_id,
                      dataset_name=train.name, dataset_digest=train.digest)
    client.log_metric(runs[3], "val_acc", 0.75, step=2, timestamp=20, model_id=model.model_id)
    client.finalize_logged_model(model.model_id, "READY")
    client.log_inputs(runs[3], models=[LoggedModelInput(model.model_id)])
    client.log_outputs(runs[3], [LoggedModelOutput(model.model_id, step=2)])
    client.log_text(runs[3], "hello", "notes/readme.txt")
    pending = client.create_logged_model(nlp, name="draft")

    client.create_registered_model("detector", tags={"task": "detection"}, description="finds things")
    first = client.create_model_version("detector", f"runs:/{runs[0]}/model", run_id=runs[0], tags={"v": "1"})
    second = client.create_model_version("detector", f"runs:/{runs[1]}/model", run_id=runs[1],
                                         description="better")
    third = client.create_model_version("detector", f"runs:/{runs[1]}/model", run_id=runs[1])
    client.transition_model_version_stage("detector", second.version, "Production")
    client.set_registered_model_alias("detector", "champion", first.version)
    client.delete_model_version("detector", third.version)
    client.create_registered_model("empty")
    client.create_registered_model("classifier")
    client.create_model_version("classifier", f"models:/{model.model_id}", model_id=model.model_id)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        mlflow.genai.register_prompt(name="greeting", template="Hello {{name}}", commit_message="first")
    finally:
        mlflow.set_tracking_uri(previous)
    return {
        "experiment_ids": ["0", vision, nlp, retired],
        "runs": runs,
        "logged_models": [model.model_id, pending.model_id],
        "registered_models": ["detector", "empty", "classifier", "greeting"],
    }


def call(base: str, method: str, path: str, body: dict | None = None, query: dict | None = None):
    """(status, JSON answer) of one REST call."""
    url = base + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text or b"{}")
        except ValueError:
            return error.code, {"body": text[:200].decode(errors="replace")}


def questions(store: dict) -> list[tuple[str, str, dict | None, dict | None]]:
    """Every REST question asked of both servers: (method, path, body, query)."""
    api = "/api/2.0/mlflow/"
    asked: list[tuple] = []
    for view in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
        asked.append(("POST", api + "experiments/search", {"view_type": view, "max_results": 100}, None))
    for experiment_id in store["experiment_ids"]:
        asked.append(("GET", api + "experiments/get", None, {"experiment_id": experiment_id}))
    asked.append(("GET", api + "experiments/get-by-name", None, {"experiment_name": "vision"}))
    ids = store["experiment_ids"]
    for filter_string in (None, "metrics.loss < 0.5", "metrics.acc >= 0.5", "params.opt = 'adam'",
                          "tags.stage = 'prod'", "attributes.status = 'FINISHED'", "params.lr LIKE '0.0%'",
                          "tags.mlflow.user = 'alice'", "attributes.run_name LIKE 'train%'"):
        for order_by in (None, ["metrics.loss DESC"], ["params.lr"], ["attributes.start_time ASC"],
                         ["tags.stage", "attributes.run_name DESC"]):
            for view in ("ACTIVE_ONLY", "ALL"):
                body = {"experiment_ids": ids, "run_view_type": view, "max_results": 50}
                if filter_string:
                    body["filter"] = filter_string
                if order_by:
                    body["order_by"] = order_by
                asked.append(("POST", api + "runs/search", body, None))
    for run_id in store["runs"]:
        asked.append(("GET", api + "runs/get", None, {"run_id": run_id}))
        for key in ("loss", "acc", "val_loss", "val_acc", "missing"):
            asked.append(("GET", api + "metrics/get-history", None, {"run_id": run_id, "metric_key": key}))
        asked.append(("GET", api + "metrics/get-history", None,
                      {"run_id": run_id, "metric_key": "loss", "max_results": 700}))
        asked.append(("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", None,
                      {"run_ids": run_id, "metric_key": "loss", "max_results": 50}))
    asked.append(("POST", "/ajax-api/2.0/mlflow/experiments/search-datasets", {"experiment_ids": ids}, None))
    for model_id in store["logged_models"]:
        asked.append(("GET", f"/api/2.0/mlflow/logged-models/{model_id}", None, None))
    asked.append(("POST", "/api/2.0/mlflow/logged-models/search", {"experiment_ids": ids}, None))
    asked.append(("POST", "/api/2.0/mlflow/logged-models/search",
                  {"experiment_ids": ids, "filter": "metrics.val_loss < 1"}, None))
    asked.append(("GET", api + "registered-models/search", None, {"max_results": 100}))
    asked.append(("GET", api + "registered-models/search", None, {"filter": "tags.`mlflow.prompt.is_prompt` = 'true'"}))
    asked.append(("GET", api + "model-versions/search", None, {"max_results": 100}))
    asked.append(("GET", api + "model-versions/search", None, {"filter": "name = 'detector'"}))
    for name in store["registered_models"]:
        asked.append(("GET", api + "registered-models/get", None, {"name": name}))
        asked.append(("POST", api + "registered-models/get-latest-versions", {"name": name}, None))
        for version in ("1", "2", "3"):
            asked.append(("GET", api + "model-versions/get", None, {"name": name, "version": version}))
    asked.append(("GET", api + "registered-models/alias", None, {"name": "detector", "alias": "champion"}))
    return asked


def differences(mlflow_url: str, gateway_url: str, store: dict) -> list[str]:
    """The questions the two servers answer differently, each with both answers."""
    found = []
    for method, path, body, query in questions(store):
        expected = call(mlflow_url, method, path, body, query)
        actual = _without_gateway_extras(path, call(gateway_url, method, path, body, query))
        if normalized(expected) != normalized(actual):
            where = "; ".join(_paths(normalized(expected), normalized(actual), "$")[:5])
            found.append(f"{method} {path} {body or query}: {where}")
    return found


def _without_gateway_extras(path: str, answer):
    """The gateway's answer without what the gateway adds to MLflow's whichever way the data came in
    (the same runs logged through its API answer the same): a history point's logged model and
    dataset, and the model inputs of runs in a search page (MLflow shows them on runs/get only)."""
    status, body = answer
    if path.endswith("metrics/get-history"):
        for point in body.get("metrics", []):
            for field in ("model_id", "dataset_name", "dataset_digest"):
                point.pop(field, None)
    if path.endswith("runs/search"):
        for run in body.get("runs", []):
            run.get("inputs", {}).pop("model_inputs", None)
    return status, body


def _paths(expected, actual, path: str) -> list[str]:
    """Where two answers part: each path with mlflow's and the gateway's value."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            found += _paths(expected.get(key, "<absent>"), actual.get(key, "<absent>"), f"{path}.{key}")
        return found
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)) and len(expected) == len(actual):
        found = []
        for index, (one, other) in enumerate(zip(expected, actual)):
            found += _paths(one, other, f"{path}[{index}]")
        return found
    if expected != actual:
        return [f"{path}: mlflow {str(expected)[:300]} / gateway {str(actual)[:300]}"]
    return []


def normalized(answer):
    """An answer with what may differ taken out: an error's wording (its code and status stay), the
    order of lists MLflow gives in no defined order, and MLflow 3's ``workspace`` field of experiments,
    which the gateway (without workspaces) does not write."""
    status, body = answer
    if status >= 400:
        return status, body.get("error_code")
    return status, _normalized(body, "")


# Lists in no defined order, by the key that holds them ("data.metrics": a run's latest metrics,
# not a metric history; MLflow's query of dataset summaries has no ORDER BY, and on MariaDB their
# order changes from one plan to another).
_UNORDERED = {"tags", "params", "aliases", "data.metrics", "dataset_inputs", "model_inputs", "dataset_summaries"}


def _normalized(value, parent: str):
    if isinstance(value, dict):
        return {key: _normalized(item, f"{parent.rsplit('.', 1)[-1]}.{key}".lstrip("."))
                for key, item in value.items() if key != "workspace"}
    if isinstance(value, list):
        items = [_normalized(item, parent) for item in value]
        if parent in _UNORDERED or parent.rsplit(".", 1)[-1] in _UNORDERED:
            return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
        return items
    return value
