"""The calls MLflow's web UI makes, asked of the gateway and of a stock `mlflow server`.

Both servers get the same seeded story (tests/e2e/ui/seed.py) through the stock
client. The UI's own GraphQL operations (their query text as the UI sends it)
and its ajax-only REST paths are then asked of both, and the answers compared
after ids and times are replaced by their names. Where the gateway answers
differently on purpose, the test says so and checks the gateway's answer alone.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ui.seed import Seeded, seed
from tests.e2e.ui.conftest import new_database
from tests.server import GatewayProcess

pytestmark = pytest.mark.timeout(600)

QUERIES = Path(__file__).with_name("ui_queries.graphql").read_text()

# Times the servers stamp themselves (creation, last update): they differ by run of the test.
# alpha's end time too: logging its model reopens and ends it at the time of the call.
VOLATILE_KEYS = {
    "endTime", "creationTime", "lastUpdateTime", "creationTimestamp", "lastUpdatedTimestamp",
    "creation_time", "last_update_time", "creation_timestamp", "last_updated_timestamp",
}


@pytest.fixture(scope="module")
def gateway_story(postgres, tmp_path_factory):
    """A gateway of this module's own: the browser tests change their server's story."""
    server = GatewayProcess(new_database(postgres))
    try:
        yield server, seed(server.url, tmp_path_factory.mktemp("ui-gateway"))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(mlflow_server, tmp_path_factory) -> tuple[str, Seeded]:
    return mlflow_server.url, seed(mlflow_server.url, tmp_path_factory.mktemp("ui-reference"))


@pytest.fixture(scope="module")
def both(gateway_story, reference) -> list[tuple[str, Seeded]]:
    server, story = gateway_story
    return [(server.url, story), reference]


@pytest.fixture(scope="module")
def gateway_url(gateway_story) -> str:
    return gateway_story[0].url


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def graphql(base: str, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
    status, _, body = call(base + "/graphql", "POST", {"query": QUERIES, "operationName": operation,
                                                        "variables": variables})
    assert status == 200, body
    return json.loads(body)


def named(value: Any, story: Seeded) -> Any:
    """The answer with the story's ids replaced by names and server-stamped times by "<time>"."""
    names = {run_id: f"<run {name}>" for name, run_id in story.runs.items()}
    names[story.logged_model_id] = "<logged model>"
    experiments = {story.experiment_id: "<ui-demo>", story.other_experiment_id: "<ui-other>"}
    pattern = re.compile("|".join(re.escape(k) for k in sorted(names, key=len, reverse=True)))

    def walk(item: Any, key: str | None = None) -> Any:
        if key in VOLATILE_KEYS:
            return "<time>"
        if isinstance(item, dict):
            return {k: walk(v, k) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, str):
            if key in ("experimentId", "experiment_id") and item in experiments:
                return experiments[item]
            item = pattern.sub(lambda m: names[m.group(0)], item)
            return re.sub(r"mlflow-artifacts:/(\d+)", lambda m: "mlflow-artifacts:/" + experiments.get(m[1], m[1]), item)
        return item

    return walk(value)


def ask_both(both, ask) -> list[Any]:
    """The same question asked of the gateway and the reference, each answer with names for ids."""
    return [named(ask(base, story), story) for base, story in both]


def test_get_experiment_query(both):
    gateway, reference = ask_both(
        both, lambda base, s: graphql(base, "MlflowGetExperimentQuery", {"input": {"experimentId": s.experiment_id}})
    )
    experiment = gateway["data"]["mlflowGetExperiment"]["experiment"]
    assert experiment["name"] == "ui-demo"
    assert experiment["tags"] == [{"key": "team", "value": "vision"}]
    # `mlflow server` names its default workspace; the gateway has none.
    assert gateway == reference


def test_get_run_query(both):
    gateway, reference = ask_both(both, lambda base, s: graphql(base, "GetRun", {"data": {"runId": s.runs["alpha"]}}))
    run = gateway["data"]["mlflowGetRun"]["run"]
    assert run["info"]["runName"] == "alpha"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.1", "batch": "32", "optimizer": "adam"}
    assert {m["key"]: (m["value"], m["step"]) for m in run["data"]["metrics"]} == {
        "loss": (0.1, "9"), "accuracy": (0.86, "9"),
    }
    assert sorted((v["name"], v["version"]) for v in run["modelVersions"]) == [("ui-model", "1"), ("ui-model", "2")]
    assert run["experiment"]["name"] == "ui-demo"
    assert _sorted_run(gateway["data"]["mlflowGetRun"]["run"]) == _sorted_run(reference["data"]["mlflowGetRun"]["run"])
    assert gateway["errors"] is None and reference["errors"] is None


def _sorted_run(run: dict[str, Any]) -> dict[str, Any]:
    """A run with its lists in one order: the servers list params, metrics and tags in their own orders."""
    data = {k: sorted(v, key=lambda e: e["key"]) for k, v in run["data"].items() if isinstance(v, list)}
    tags = [t for t in data["tags"] if t["key"] != "mlflow.log-model.history"]
    versions = sorted(run["modelVersions"], key=lambda v: v["version"])
    return {**run, "data": {**data, "tags": tags}, "modelVersions": versions}


def test_search_runs_query(both):
    gateway, reference = ask_both(both, lambda base, s: graphql(base, "SearchRuns", {"data": {
        "experimentIds": [s.experiment_id], "filter": "params.lr != '0.2'", "maxResults": 50,
        "orderBy": ["attributes.start_time DESC"],
    }}))
    runs = gateway["data"]["mlflowSearchRuns"]["runs"]
    assert [r["info"]["runName"] for r in runs] == ["gamma", "alpha"]
    assert [_sorted_run(r) for r in runs] == [_sorted_run(r) for r in reference["data"]["mlflowSearchRuns"]["runs"]]


def test_search_runs_query_by_view_type(gateway_story):
    """`mlflow server` 3.17 fails any runViewType ("Failed to parse run_view_type field"); the gateway reads it."""
    server, story = gateway_story
    answers = [
        graphql(server.url, "SearchRuns", {"data": {"experimentIds": [story.experiment_id], "runViewType": view}})
        for view in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
    ]
    names = [sorted(r["info"]["runName"] for r in a["data"]["mlflowSearchRuns"]["runs"]) for a in answers]
    assert names == [["alpha", "beta", "gamma"], [], ["alpha", "beta", "gamma"]]


def test_metric_history_bulk_interval_query(both):
    gateway, reference = ask_both(both, lambda base, s: graphql(base, "GetMetricHistoryBulkInterval", {"data": {
        "runIds": [s.runs["alpha"], s.runs["beta"]], "metricKey": "loss", "maxResults": 320,
    }}))
    points = gateway["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert len(points) == 20
    assert [p for p in points if p["runId"] == "<run alpha>"][0] == {
        "timestamp": "1700000000000", "step": "0", "runId": "<run alpha>", "key": "loss", "value": 1.0,
    }
    assert sorted(points, key=lambda p: (p["runId"], int(p["step"]))) == sorted(
        reference["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"], key=lambda p: (p["runId"], int(p["step"]))
    )


def test_list_artifacts_search_versions_and_datasets(both):
    def ask(base, s):
        return [
            graphql(base, "ListArtifacts", {"input": {"runId": s.runs["alpha"]}}),
            graphql(base, "SearchModelVersions", {"input": {"filter": "name='ui-model'"}}),
            graphql(base, "SearchDatasets", {"input": {"experimentIds": [s.experiment_id]}}),
        ]

    gateway, reference = ask_both(both, ask)
    files = gateway[0]["data"]["mlflowListArtifacts"]["files"]
    assert {f["path"]: f["fileSize"] for f in files if not f["isDir"]} == {"notes.txt": "16", "plot.png": "100"}
    versions = gateway[1]["data"]["mlflowSearchModelVersions"]["modelVersions"]
    assert [(v["version"], v["currentStage"]) for v in versions] == [("2", "Staging"), ("1", "None")]
    assert gateway == reference


def test_graphql_errors_as_mlflow_answers_them(both):
    def ask(base, s):
        return [
            graphql(base, "GetRun", {"data": {"runId": "0" * 32}}),
            graphql(base, "MlflowGetExperimentQuery", {"input": {"experimentId": "abc"}}),
            graphql(base, "MlflowGetExperimentQuery", {"input": {"experimentId": "987654"}}),
            json.loads(call(base + "/graphql", "POST", {"query": "query { nope }"})[2]),
        ]

    gateway, reference = ask_both(both, ask)
    assert gateway == reference
    assert gateway[0] == {"data": {"mlflowGetRun": None}, "errors": [f"Run with id={'0' * 32} not found"]}


def test_graphql_bounds(gateway_url):
    deep = "query { test(inputString: \"x\") { output } }"
    aliases = "query { " + " ".join(f"a{i}: test(inputString: \"x\") {{ output }}" for i in range(11)) + " }"
    answers = [json.loads(call(gateway_url + "/graphql", "POST", {"query": q})[2]) for q in (deep, aliases)]
    assert answers[0] == {"data": {"test": {"output": "x"}}, "errors": None}
    assert answers[1]["data"] is None
    assert answers[1]["errors"][0].startswith("GraphQL queries should have at most 10 root fields, got 11 root fields.")


def test_metric_history_bulk(both):
    def ask(base, s):
        ids = f"run_id={s.runs['alpha']}&run_id={s.runs['beta']}"
        path = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
        first_twelve = json.loads(call(f"{base}{path}?{ids}&metric_key=loss&max_results=12")[2])["metrics"]
        return [
            # by run id first: the twelve are the first run's ten and two of the other's
            [p["run_id"] for p in first_twelve] == [min(s.runs["alpha"], s.runs["beta"])] * 10 + [
                max(s.runs["alpha"], s.runs["beta"])] * 2,
            sorted(json.loads(call(f"{base}{path}?{ids}&metric_key=loss")[2])["metrics"],
                   key=lambda p: (p["run_id"] == s.runs["beta"], p["step"])),
            json.loads(call(f"{base}{path}?metric_key=loss")[2])["message"],
            json.loads(call(f"{base}{path}?{ids}")[2])["message"],
            json.loads(call(f"{base}{path}?run_id={'0' * 32}&metric_key=loss")[2]),
        ]

    gateway, reference = ask_both(both, ask)
    assert gateway[0] is True
    assert len(gateway[1]) == 20
    assert gateway == reference


def test_search_datasets_rest(both):
    def ask(base, s):
        path = base + "/ajax-api/2.0/mlflow/experiments/search-datasets"
        return [call(path, "POST", body)[::2] for body in (
            {"experiment_ids": [s.experiment_id]}, {}, {"experiment_ids": ["abc"]}, {"experiment_ids": ["1"] * 21},
        )]

    gateway, reference = ask_both(both, ask)
    for (status, body), (reference_status, reference_body) in zip(gateway, reference):
        assert status == reference_status
        assert json.loads(body).get("message") == json.loads(reference_body).get("message")
        assert json.loads(body).get("dataset_summaries") == json.loads(reference_body).get("dataset_summaries")


def test_artifact_previews(both):
    def ask(base, s):
        answers = []
        for path in ("notes.txt", "plot.png"):
            status, headers, body = call(f"{base}/get-artifact?path={path}&run_uuid={s.runs['alpha']}")
            answers.append((status, headers["Content-Type"], headers["Content-Disposition"], len(body)))
        status, headers, body = call(f"{base}/model-versions/get-artifact?path=MLmodel&name=ui-model&version=1")
        answers.append((status, headers["Content-Type"], b"python_function" in body))
        status, _, body = call(f"{base}/get-artifact?path=missing.txt&run_uuid={s.runs['alpha']}")
        answers.append((status, json.loads(body)["error_code"]))
        return answers

    gateway, reference = ask_both(both, ask)
    assert gateway[0] == (200, "text/plain", 'attachment; filename="notes.txt"', 16)
    assert gateway[1][:2] == (200, "image/png")
    assert gateway[2] == (200, "text/plain", True)
    assert gateway[3] == (404, "RESOURCE_DOES_NOT_EXIST")
    # The gateway quotes the file name in Content-Disposition; MLflow sends it bare.
    assert [a[:2] + a[3:] for a in gateway[:2]] == [a[:2] + a[3:] for a in reference[:2]]
    assert gateway[2:] == reference[2:]


def test_upload_artifact(gateway_story):
    server, story = gateway_story
    run_id = story.runs["gamma"]
    upload = f"{server.url}/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run_id}&path=uploads/hello.txt"
    request = urllib.request.Request(upload, data=b"uploaded from the UI", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    status, headers, body = call(f"{server.url}/get-artifact?path=uploads/hello.txt&run_uuid={run_id}")
    assert (status, headers["Content-Type"], body) == (200, "text/plain", b"uploaded from the UI")
    status, _, body = call(f"{server.url}/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run_id}", "POST", {})
    assert (status, json.loads(body)["message"]) == (400, "Request must specify path.")


def test_ui_and_static_files(gateway_url):
    status, headers, body = call(gateway_url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    bundle = re.search(rb'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', body).group(1).decode()
    status, headers, body = call(f"{gateway_url}/{bundle}")
    assert status == 200 and headers["Content-Type"] == "application/javascript" and len(body) > 100_000
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, headers, _ = call(gateway_url + "/static-files/favicon.ico")
    assert (status, headers["Cache-Control"]) == (200, "no-cache")
    status, _, body = call(gateway_url + "/static-files/../../../../etc/passwd")
    assert status == 404
    status, _, body = call(gateway_url + "/static-files/static/js/nope.js")
    assert (status, json.loads(body)["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


def test_request_field_of_wrong_type(both):
    def ask(base, s):
        body = {"name": "typed", "tags": {"a": 1}}
        return json.loads(call(base + "/ajax-api/2.0/mlflow/experiments/create", "POST", body)[2])["message"]

    gateway, reference = ask_both(both, ask)
    assert gateway == reference == (
        "Invalid value {\"a\":1} for parameter 'tags' supplied:  Hint: Value was of type 'dict'. "
        "See the API docs for more information about request parameters."
    )
