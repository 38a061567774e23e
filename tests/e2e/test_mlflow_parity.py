"""Search through the stock client: the gateway answers as a real `mlflow server` does.

One `mlflow server` (sqlite, one worker) starts for the module. The same runs
are logged to it and to the gateway through MlflowClient; then every
representative filter and order_by is asked of both, through
MlflowClient.search_runs (paged) and mlflow.search_runs (pandas). Run ids and
times differ between the servers, so runs are compared by name.
"""

from __future__ import annotations

import math
import re
import uuid

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from tests.mlflow_server import MlflowServerProcess

NAN = math.nan

# `mlflow server` imports for a long time; on a busy machine its start alone can take minutes.
pytestmark = pytest.mark.timeout(600)

# name: (start_time, end_time or None, status, params, metrics {key: [values by step]}, tags)
RUNS = {
    "r1": (1000, 5000, "FINISHED", {"lr": "0.1", "opt": "adam"}, {"loss": [0.9, 0.5, 0.7], "acc": [0.6]},
           {"team": "vision", "note": "it's"}),
    "r2": (2000, None, "RUNNING", {"lr": "0.01", "opt": "sgd"}, {"loss": [0.4], "acc": [NAN]},
           {"team": "nlp"}),
    "r3": (3000, 9000, "FAILED", {"lr": "0.1", "opt": "Adam", "layers": "3"}, {"loss": [0.2, 0.8]},
           {"team": "Vision", "note": "50% off"}),
    "r4": (4000, None, "RUNNING", {"opt": "a_b"}, {"acc": [0.9, 0.95]}, {}),
    "r5": (5000, 6000, "FINISHED", {"lr": "1e-3", "opt": "adam"}, {"loss": [0.4, 0.4], "acc": [0.1]},
           {"team": "vision"}),
    "gone": (6000, None, "RUNNING", {"lr": "0.1"}, {"loss": [0.1]}, {"team": "vision"}),
}

# Not here: LIKE patterns with a backslash. MLflow's SQL store leaves the escape
# character to the database, so `a\\_b` escapes `_` on PostgreSQL (as the gateway
# does) but is a literal backslash on sqlite, this test's backend.
FILTERS = [
    None,
    "metrics.loss < 0.5",
    "metrics.loss >= 0.4",
    "metrics.acc != 0.6",
    "metrics.acc = 0",
    "metric.acc > 0.5",
    "params.lr = '0.1'",
    "params.opt != 'adam'",
    "params.opt LIKE 'a%'",
    "params.opt ILIKE 'A%'",
    "params.opt LIKE 'a_b'",
    "params.layers IS NULL",
    "params.layers IS NOT NULL",
    "tags.team = 'vision'",
    "tags.note LIKE '%0% off'",
    "tags.`note` = \"it's\"",
    "tags.mlflow.runName = 'r3'",
    "tags.team ILIKE 'VISION' AND metrics.loss > 0.3",
    "attributes.status = 'FINISHED'",
    "attributes.run_name != 'r1'",
    "attributes.status IN ('FINISHED', 'FAILED')",  # rejected by both, with one message
    "metrics.loss < 'a'",
    "params.lr < '1'",
    "attributes.start_time >= '1'",
    "attributes.run_name LIKE 'r%'",
    "attributes.`run name` = 'r2'",
    "attributes.start_time >= 3000",
    "attributes.created < 3000",
    "attributes.end_time > 5000",
    "params.lr = '0.1' and metrics.loss > 0.5 and tags.team = 'vision'",
]
ORDER_BYS = [
    None,
    ["metrics.loss"],
    ["metrics.loss DESC"],
    ["metrics.acc ASC", "attributes.run_name DESC"],
    ["params.lr"],
    ["params.opt DESC"],
    ["tags.team", "metrics.loss DESC"],
    ["attributes.start_time ASC"],
    ["attributes.end_time DESC"],
    ["attributes.run_name"],
    ["attributes.status", "params.lr DESC"],
]


def log_runs(uri: str) -> str:
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("parity-" + uuid.uuid4().hex)
    for name, (start, end, status, params, metrics, tags) in RUNS.items():
        run = client.create_run(experiment_id, run_name=name, start_time=start, tags={"mlflow.user": "alice", **tags})
        run_id = run.info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for key, values in metrics.items():
            for step, value in enumerate(values):
                client.log_metric(run_id, key, value, timestamp=start + step, step=step)
        if status != "RUNNING":
            client.set_terminated(run_id, status, end_time=end)
        if name == "gone":
            client.delete_run(run_id)
    return experiment_id


@pytest.fixture(scope="module")
def servers(gateway):
    mlflow_server = MlflowServerProcess(startup_timeout=420)
    try:
        yield {
            "mlflow": (mlflow_server.url, log_runs(mlflow_server.url)),
            "gateway": (gateway.url, log_runs(gateway.url)),
        }
    finally:
        mlflow_server.stop()


def comparable_run(run) -> tuple:
    """A run as a tuple of what both servers must agree on (ids and server-set times left out)."""
    tags = {k: v for k, v in run.data.tags.items() if k != "mlflow.user"}
    return (
        run.info.run_name,
        run.info.status,
        run.info.lifecycle_stage,
        run.info.start_time,
        run.info.end_time if run.info.status != "RUNNING" else None,
        repr(sorted(run.data.metrics.items())),
        sorted(run.data.params.items()),
        sorted(tags.items()),
    )


def comparable_message(message: str) -> str:
    """MLflow prints comparator sets in Python's set order, which changes with the hash seed: sort them."""
    return re.sub(r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


def client_search(uri, experiment_id, filter_string, order_by, view_type=ViewType.ACTIVE_ONLY, page_size=None):
    client = MlflowClient(uri)
    runs, token = [], None
    while True:
        try:
            page = client.search_runs(
                [experiment_id], filter_string or "", view_type, max_results=page_size or 1000,
                order_by=order_by, page_token=token,
            )
        except MlflowException as error:
            return ("rejected", error.error_code, comparable_message(error.message))
        runs.extend(page)
        token = page.token
        if not token:
            return [comparable_run(run) for run in runs]


# Each filter with one of the orders, and each order without a filter.
SEARCHES = [(f, ORDER_BYS[i % len(ORDER_BYS)]) for i, f in enumerate(FILTERS)] + [(None, o) for o in ORDER_BYS]


@pytest.mark.parametrize(("filter_string", "order_by"), SEARCHES)
def test_client_search_runs_matches_mlflow_server(servers, filter_string, order_by):
    results = {
        server: client_search(uri, experiment_id, filter_string, order_by)
        for server, (uri, experiment_id) in servers.items()
    }
    assert results["gateway"] == results["mlflow"]


@pytest.mark.parametrize(
    ("view_type", "order_by"),
    [(ViewType.ALL, ["metrics.loss DESC"]), (ViewType.DELETED_ONLY, None), (ViewType.ALL, ["params.lr", "tags.team"])],
)
def test_view_types_and_pages_match_mlflow_server(servers, view_type, order_by):
    results = {
        server: client_search(uri, experiment_id, None, order_by, view_type, page_size=2)
        for server, (uri, experiment_id) in servers.items()
    }
    assert results["gateway"] == results["mlflow"]
    assert len(results["gateway"]) == (1 if view_type == ViewType.DELETED_ONLY else len(RUNS))


def pandas_search(uri, experiment_id, filter_string, order_by) -> pd.DataFrame:
    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs([experiment_id], filter_string=filter_string or "", order_by=order_by)
    dropped = [c for c in frame.columns if c in ("run_id", "experiment_id", "artifact_uri", "tags.mlflow.user")]
    frame = frame.drop(columns=dropped)
    frame["end_time"] = frame["end_time"].where(frame["status"] != "RUNNING")
    return frame.reset_index(drop=True)


@pytest.mark.parametrize(
    ("filter_string", "order_by"),
    [
        (None, None),
        ("metrics.loss > 0.3", ["metrics.loss DESC"]),
        ("params.opt LIKE '%a%'", ["params.lr", "attributes.run_name"]),
        ("tags.team = 'vision'", ["attributes.start_time"]),
    ],
)
def test_pandas_search_runs_matches_mlflow_server(servers, filter_string, order_by):
    frames = {
        server: pandas_search(uri, experiment_id, filter_string, order_by)
        for server, (uri, experiment_id) in servers.items()
    }
    gateway_frame, mlflow_frame = frames["gateway"], frames["mlflow"]
    # Columns of params, metrics and tags come in the order the server lists a
    # run's keys: the gateway sorts them, MLflow's order is its database's row
    # order (unspecified). Compare the same columns in one order.
    assert sorted(gateway_frame.columns) == sorted(mlflow_frame.columns)
    assert len(gateway_frame) > 0
    columns = sorted(mlflow_frame.columns)
    pd.testing.assert_frame_equal(gateway_frame[columns], mlflow_frame[columns])


# ---- the model registry -------------------------------------------------------------------


def registry_story(uri: str, prefix: str) -> list:
    """The same registry calls on one server; what a client sees of each (times left out)."""
    client = MlflowClient(uri)
    seen: list = []

    def version(v):
        return (v.name, v.version, v.current_stage, v.source, v.run_id, v.run_link, v.description, v.status,
                sorted(v.tags.items()), sorted(v.aliases))

    def model(m, ordered=True):
        latest = [version(v) for v in m.latest_versions]
        return (m.name, m.description, sorted(m.tags.items()), sorted(m.aliases.items()),
                latest if ordered else sorted(latest))

    def attempt(call, *args, **kwargs):
        try:
            result = call(*args, **kwargs)
        except MlflowException as error:
            # MLflow appends its database's error text to a failed rename; the gateway does not.
            message = error.message.split(" Error: (")[0]
            return ("rejected", error.error_code, comparable_message(message))
        if isinstance(result, list):
            # MLflow's search reads the latest versions in its database's order.
            return [model(r, ordered=False) if hasattr(r, "latest_versions") else version(r) for r in result]
        if hasattr(result, "latest_versions"):
            return model(result)
        return version(result) if result is not None else None

    names = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    seen.append(attempt(client.create_registered_model, names[0], tags={"team": "vision"}, description="first"))
    seen.append(attempt(client.create_registered_model, names[1], tags={"team": "nlp"}))
    seen.append(attempt(client.create_registered_model, names[2]))
    seen.append(attempt(client.create_registered_model, names[0]))
    seen.append(attempt(client.create_registered_model, "a:b"))
    experiment = client.create_experiment(f"{prefix}-experiment")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    for index in range(4):
        seen.append(attempt(client.create_model_version, names[0], f"s3://bucket/{index}", tags={"i": str(index)}))
    seen.append(attempt(client.create_model_version, names[1], f"{run.info.artifact_uri}/model", run_id=run_id))
    seen.append(attempt(client.create_model_version, names[1], f"runs:/{run_id}/model", run_id=run_id))
    seen.append(attempt(client.create_model_version, names[2], f"models:/{names[0]}/2"))
    seen.append(attempt(client.create_model_version, names[2], "/local/path"))
    seen.append(attempt(client.create_model_version, names[2], f"runs:/{run_id}/model"))
    seen.append(attempt(client.transition_model_version_stage, names[0], "1", "staging"))
    seen.append(attempt(client.transition_model_version_stage, names[0], "2", "Production"))
    seen.append(attempt(client.transition_model_version_stage, names[0], "3", "Production", archive_existing_versions=True))
    seen.append(attempt(client.transition_model_version_stage, names[0], "3", "Nowhere"))
    seen.append(attempt(client.delete_model_version, names[0], "4"))
    seen.append(attempt(client.create_model_version, names[0], "s3://bucket/after-delete"))
    seen.append(attempt(client.get_model_version, names[0], "4"))
    seen.append(attempt(client.get_model_version, names[0], "x"))
    client.set_registered_model_alias(names[0], "champion", "3")
    client.set_model_version_tag(names[0], "3", "reviewed", "yes")
    seen.append(attempt(client.set_registered_model_alias, names[0], "v1", "3"))
    seen.append(attempt(client.get_model_version_by_alias, names[0], "champion"))
    seen.append(attempt(client.get_model_version_by_alias, names[0], "nobody"))
    seen.append(attempt(client.get_model_version_by_alias, names[0], "latest"))
    seen.append(attempt(client.get_registered_model, names[0]))
    seen.append(attempt(client.get_latest_versions, names[0], stages=["Archived", "Staging"]))
    seen.append(attempt(client.get_registered_model, f"{prefix}-missing"))
    seen.append(attempt(client.update_model_version, names[0], "1", description="one"))
    seen.append(attempt(client.rename_registered_model, names[2], f"{prefix}-c2"))
    seen.append(attempt(client.rename_registered_model, f"{prefix}-c2", names[1]))
    for filter_string, order_by in [
        (f"name LIKE '{prefix}-%'", None),
        (f"name LIKE '{prefix}-%' AND tags.team = 'vision'", None),
        (f"name IN ('{names[1]}', '{prefix}-c2')", ["name DESC"]),
        (f"name LIKE '{prefix}-%' AND tags.team != 'vision'", None),
        ("name < 'x'", None),
        ("tags.team = vision", None),
        ("foo = 'x'", None),
        (None, ["creation_timestamp"]),
    ]:
        seen.append(attempt(lambda: list(client.search_registered_models(filter_string, order_by=order_by))))
    for filter_string, order_by in [
        (f"name = '{names[0]}'", None),
        (f"name = '{names[0]}' AND version_number >= 2", ["version_number ASC"]),
        (f"name = '{names[0]}' AND tags.i = '1'", None),
        (f"run_id = '{run_id}'", None),
        (f"name LIKE '{prefix}-%' AND source_path LIKE 's3://%'", ["name", "version_number"]),
        ("version_number > 1.5", None),
        ("source_path IN ('x')", None),
        (None, ["tags.i"]),
    ]:
        seen.append(attempt(lambda: list(client.search_model_versions(filter_string, order_by=order_by))))
    page = client.search_model_versions(f"name = '{names[0]}'", max_results=2)
    seen.append([version(v) for v in page])
    seen.append([version(v) for v in client.search_model_versions(f"name = '{names[0]}'", max_results=2,
                                                                  page_token=page.token)])
    seen.append(attempt(client.delete_registered_model, names[0]))
    seen.append(attempt(client.get_model_version, names[0], "1"))
    seen.append(attempt(client.create_registered_model, names[0]))
    seen.append(attempt(client.create_model_version, names[0], "s3://bucket/reborn"))
    return seen


def test_model_registry_matches_mlflow_server(servers):
    prefix = "registry-" + uuid.uuid4().hex[:8]
    stories = {server: registry_story(uri, prefix) for server, (uri, _) in servers.items()}
    gateway_story, mlflow_story = stories["gateway"], stories["mlflow"]
    # The run of each server has its own id: compare with it blanked out.
    assert len(gateway_story) == len(mlflow_story)
    for index, (ours, theirs) in enumerate(zip(gateway_story, mlflow_story)):
        assert blank_run_ids(ours) == blank_run_ids(theirs), index


def blank_run_ids(value):
    text = repr(value)
    return re.sub(r"[0-9a-f]{32}", "<id>", re.sub(r"mlflow-artifacts:/\d+/", "mlflow-artifacts:/<exp>/", text))
