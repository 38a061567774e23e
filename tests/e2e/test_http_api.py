"""Raw HTTP against the gateway: response shapes and every error it answers."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

API = "/api/2.0/mlflow"


@pytest.fixture
def http(gateway):
    session = requests.Session()

    class Client:
        url = gateway.url

        def post(self, path, body=None, *, raw=None, headers=None, prefix=API):
            if raw is not None:
                return session.post(gateway.url + prefix + path, data=raw, headers=headers or {}, timeout=30)
            return session.post(gateway.url + prefix + path, json=body if body is not None else {}, timeout=30)

        def get(self, path, params=None, prefix=API):
            return session.get(gateway.url + prefix + path, params=params, timeout=30)

    yield Client()
    session.close()


def error_of(response):
    body = response.json()
    assert set(body) == {"error_code", "message"}
    return response.status_code, body["error_code"], body["message"]


def new_experiment(http) -> str:
    response = http.post("/experiments/create", {"name": "http-" + uuid.uuid4().hex})
    assert response.status_code == 200
    return response.json()["experiment_id"]


def new_run(http, **fields) -> dict:
    body = {"experiment_id": new_experiment(http), "start_time": 1700000000000, **fields}
    response = http.post("/runs/create", body)
    assert response.status_code == 200, response.text
    return response.json()["run"]


def test_health_and_version(gateway):
    assert requests.get(gateway.url + "/health", timeout=5).text == "OK"
    assert requests.get(gateway.url + "/version", timeout=5).status_code == 200


def test_run_create_and_get_have_mlflow_shape(http):
    run = new_run(http, run_name="probe", tags=[{"key": "t1", "value": "v"}])
    info = run["info"]
    run_id = info["run_id"]
    assert len(run_id) == 32 and info["run_uuid"] == run_id
    assert info == {
        "run_uuid": run_id,
        "experiment_id": info["experiment_id"],
        "run_name": "probe",
        "user_id": "",
        "status": "RUNNING",
        "start_time": 1700000000000,
        "artifact_uri": f"mlflow-artifacts:/{info['experiment_id']}/{run_id}/artifacts",
        "lifecycle_stage": "active",
        "run_id": run_id,
    }
    assert run["data"] == {"tags": [{"key": "t1", "value": "v"}, {"key": "mlflow.runName", "value": "probe"}]}
    assert run["inputs"] == {}
    got = http.get("/runs/get", {"run_id": run_id, "run_uuid": run_id}).json()["run"]
    assert got["outputs"] == {} and got["inputs"] == {}
    assert sorted(t["key"] for t in got["data"]["tags"]) == ["mlflow.runName", "t1"]


def test_both_prefixes_serve_the_same_api(http):
    run = new_run(http)
    for prefix in (API, "/ajax-api/2.0/mlflow"):
        response = http.get("/runs/get", {"run_id": run["info"]["run_id"]}, prefix=prefix)
        assert response.status_code == 200


def test_write_calls_answer_empty_json_and_metrics_read_back(http):
    run_id = new_run(http)["info"]["run_id"]
    assert http.post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.5, "timestamp": 5, "step": 2}).json() == {}
    assert http.post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": "NaN", "timestamp": 6, "step": 3}).json() == {}
    assert http.post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": "Infinity", "timestamp": 7, "step": 1}).json() == {}
    assert http.post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v"}).json() == {}
    assert http.post("/runs/set-tag", {"run_id": run_id, "key": "t", "value": "v"}).json() == {}
    history = http.get("/metrics/get-history", {"run_id": run_id, "metric_key": "m"}).json()
    assert history == {
        "metrics": [
            {"key": "m", "value": 1.5, "timestamp": 5, "step": 2},
            {"key": "m", "value": "NaN", "timestamp": 6, "step": 3},
            {"key": "m", "value": 1.7976931348623157e308, "timestamp": 7, "step": 1},
        ]
    }
    data = http.get("/runs/get", {"run_id": run_id}).json()["run"]["data"]
    assert data["metrics"] == [{"key": "m", "value": "NaN", "timestamp": 6, "step": 3}]
    assert data["params"] == [{"key": "p", "value": "v"}]


def test_metric_history_pages(http):
    run_id = new_run(http)["info"]["run_id"]
    metrics = [{"key": "m", "value": float(i), "timestamp": 1000 + i, "step": i} for i in range(25)]
    assert http.post("/runs/log-batch", {"run_id": run_id, "metrics": metrics}).status_code == 200
    seen, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": "m", "max_results": 10}
        if token:
            params["page_token"] = token
        page = http.get("/metrics/get-history", params).json()
        seen += [m["step"] for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == list(range(25))


def test_bulk_interval_samples_and_keeps_the_last_point(http):
    run_id = new_run(http)["info"]["run_id"]
    metrics = [{"key": "m", "value": float(i), "timestamp": 1000 + i, "step": i} for i in range(100)]
    http.post("/runs/log-batch", {"run_id": run_id, "metrics": metrics})
    response = http.get(
        "/metrics/get-history-bulk-interval", {"run_ids": run_id, "metric_key": "m", "max_results": 10}
    )
    points = response.json()["metrics"]
    steps = [p["step"] for p in points]
    assert len(points) == 10 and steps[0] == 0 and steps[-1] == 99 and steps == sorted(steps)
    assert all(p["run_id"] == run_id for p in points)
    ranged = http.get(
        "/metrics/get-history-bulk-interval",
        {"run_ids": run_id, "metric_key": "m", "start_step": 10, "end_step": 19, "max_results": 100},
    ).json()["metrics"]
    assert [p["step"] for p in ranged] == list(range(10, 20))


def test_experiments_crud_and_errors(http):
    name = "exp-" + uuid.uuid4().hex
    created = http.post("/experiments/create", {"name": name, "tags": [{"key": "a", "value": "1"}]})
    experiment_id = created.json()["experiment_id"]
    assert experiment_id.isdigit()
    got = http.get("/experiments/get", {"experiment_id": experiment_id}).json()["experiment"]
    assert got["name"] == name and got["artifact_location"] == f"mlflow-artifacts:/{experiment_id}"
    assert got["lifecycle_stage"] == "active" and got["tags"] == [{"key": "a", "value": "1"}]
    assert isinstance(got["creation_time"], int) and isinstance(got["last_update_time"], int)
    assert http.get("/experiments/get-by-name", {"experiment_name": name}).json()["experiment"] == got

    assert error_of(http.post("/experiments/create", {"name": name})) == (
        400, "RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists.")
    assert error_of(http.get("/experiments/get", {"experiment_id": "987654321"})) == (
        404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=987654321 exists")
    assert error_of(http.get("/experiments/get-by-name", {"experiment_name": "nope-" + name})) == (
        404, "RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name 'nope-{name}'")
    status, code, _ = error_of(http.get("/experiments/get", {"experiment_id": "abc"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")

    assert http.post("/experiments/set-experiment-tag", {"experiment_id": experiment_id, "key": "b", "value": "2"}).json() == {}
    assert http.post("/experiments/delete-experiment-tag", {"experiment_id": experiment_id, "key": "a"}).json() == {}
    assert http.post("/experiments/update", {"experiment_id": experiment_id, "new_name": name + "-x"}).json() == {}
    got = http.get("/experiments/get", {"experiment_id": experiment_id}).json()["experiment"]
    assert got["name"] == name + "-x" and got["tags"] == [{"key": "b", "value": "2"}]

    run_id = http.post("/runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    assert http.post("/experiments/delete", {"experiment_id": experiment_id}).json() == {}
    assert http.get("/runs/get", {"run_id": run_id}).json()["run"]["info"]["lifecycle_stage"] == "deleted"
    assert http.post("/runs/create", {"experiment_id": experiment_id}).status_code == 400
    assert http.post("/experiments/restore", {"experiment_id": experiment_id}).json() == {}
    assert http.get("/runs/get", {"run_id": run_id}).json()["run"]["info"]["lifecycle_stage"] == "active"


def test_default_experiment_exists(http):
    experiment = http.get("/experiments/get", {"experiment_id": "0"}).json()["experiment"]
    assert experiment["name"] == "Default" and experiment["experiment_id"] == "0"


def test_search_experiments_pages_and_filters(http):
    prefix = "page-" + uuid.uuid4().hex[:6]
    ids = [http.post("/experiments/create", {"name": f"{prefix}-{i}"}).json()["experiment_id"] for i in range(5)]
    seen, token = [], None
    while True:
        body = {"filter": f"name LIKE '{prefix}%'", "max_results": 2}
        if token:
            body["page_token"] = token
        page = http.post("/experiments/search", body).json()
        seen += [e["experiment_id"] for e in page.get("experiments", [])]
        token = page.get("next_page_token")
        assert token != ""
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    listed = http.get("/experiments/search", {"filter": f"name = '{prefix}-3'", "max_results": "10"}).json()
    assert [e["experiment_id"] for e in listed["experiments"]] == [ids[3]]


def test_update_run_answers_full_run_info_and_sets_name(http):
    run_id = new_run(http)["info"]["run_id"]
    response = http.post("/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 1700000001000, "run_name": "renamed"})
    info = response.json()["run_info"]
    assert info["status"] == "FINISHED" and info["end_time"] == 1700000001000 and info["run_name"] == "renamed"
    tags = http.get("/runs/get", {"run_id": run_id}).json()["run"]["data"]["tags"]
    assert {"key": "mlflow.runName", "value": "renamed"} in tags
    # Enums by number, null for absent fields (MLFlowClient.jl)
    info = http.post("/runs/update", {"run_id": run_id, "status": 4, "end_time": None, "run_name": None}).json()["run_info"]
    assert info["status"] == "FAILED" and info["run_name"] == "renamed"


def test_delete_tag(http):
    run_id = new_run(http, tags=[{"key": "gone", "value": "x"}])["info"]["run_id"]
    assert http.post("/runs/delete-tag", {"run_id": run_id, "key": "gone"}).json() == {}
    assert error_of(http.post("/runs/delete-tag", {"run_id": run_id, "key": "gone"})) == (
        404, "RESOURCE_DOES_NOT_EXIST", f"No tag with name: gone in run with id {run_id}")


def test_log_inputs_round_trip(http):
    run_id = new_run(http)["info"]["run_id"]
    body = {
        "run_id": run_id,
        "datasets": [{
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
            "dataset": {"name": "d", "digest": "abc", "source_type": "local", "source": "{}", "schema": "{}"},
        }],
    }
    assert http.post("/runs/log-inputs", body).json() == {}
    inputs = http.get("/runs/get", {"run_id": run_id}).json()["run"]["inputs"]
    assert inputs == {"dataset_inputs": [{
        "tags": [{"key": "mlflow.data.context", "value": "training"}],
        "dataset": {"name": "d", "digest": "abc", "source_type": "local", "source": "{}", "schema": "{}"},
    }]}


@pytest.mark.parametrize(
    "path, body, expected",
    [
        ("/runs/log-metric", {"key": "m", "value": 1, "timestamp": 1},
         "Missing value for required parameter 'run_id'. See the API docs for more information about request parameters."),
        ("/runs/log-metric", {"run_id": "RUN", "key": "m", "timestamp": 1},
         "Missing value for required parameter 'value'. See the API docs for more information about request parameters."),
        ("/runs/log-metric", {"run_id": "RUN", "key": "m", "value": "abc", "timestamp": 1},
         "Invalid value \"abc\" for parameter 'value' supplied:  Hint: Value was of type 'str'. "
         "See the API docs for more information about request parameters."),
        ("/runs/log-metric", {"run_id": "RUN", "key": "bad$key", "value": 1, "timestamp": 1},
         "Invalid value \"bad$key\" for parameter 'name' supplied: Names may only contain alphanumerics, "
         "underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."),
    ],
)
def test_write_validation_errors(http, path, body, expected):
    run_id = new_run(http)["info"]["run_id"]
    body = {k: (run_id if v == "RUN" else v) for k, v in body.items()}
    assert error_of(http.post(path, body)) == (400, "INVALID_PARAMETER_VALUE", expected)


def test_batch_limits_and_body_size(http):
    run_id = new_run(http)["info"]["run_id"]
    metrics = [{"key": f"m{i}", "value": 1, "timestamp": 1, "step": 0} for i in range(1001)]
    assert error_of(http.post("/runs/log-batch", {"run_id": run_id, "metrics": metrics})) == (
        400, "INVALID_PARAMETER_VALUE",
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
        "Please split up metrics across multiple requests and try again.")
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    status, code, message = error_of(http.post("/runs/log-batch", {"run_id": run_id, "params": params}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "at most 100 params" in message
    duplicate = [{"key": "p", "value": "1"}, {"key": "p", "value": "2"}]
    status, code, message = error_of(http.post("/runs/log-batch", {"run_id": run_id, "params": duplicate}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "p" in message
    huge = json.dumps({"run_id": run_id, "tags": [{"key": "t", "value": "x" * 1_000_001}]})
    status, code, _ = error_of(http.post("/runs/log-batch", raw=huge, headers={"Content-Type": "application/json"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert http.get("/runs/get", {"run_id": run_id}).json()["run"]["data"].get("params") is None


def test_malformed_bodies_and_content_types(http):
    run_id = new_run(http)["info"]["run_id"]
    status, code, message = error_of(
        http.post("/runs/log-metric", raw=b'{"run_id": ', headers={"Content-Type": "application/json"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "JSON" in message
    assert error_of(http.post("/runs/log-metric", raw=b"{}", headers={"Content-Type": "text/plain"})) == (
        400, "INVALID_PARAMETER_VALUE", "Bad Request. Content-Type must be one of ['application/json'].")
    status, code, message = error_of(
        http.post("/runs/log-batch", {"run_id": run_id, "metrics": "not-a-list"}))
    assert (status, code, message) == (400, "INVALID_PARAMETER_VALUE", (
        "Invalid value \"not-a-list\" for parameter 'metrics' supplied:  Hint: Value was of type 'str'. "
        "See the API docs for more information about request parameters."))
    status, code, _ = error_of(http.post("/runs/log-batch", {"run_id": run_id, "metrics": [{"key": "m", "value": [1], "timestamp": 1}]}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    status, code, _ = error_of(http.post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": True, "timestamp": 1}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    status, code, _ = error_of(http.post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": "soon"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")


def test_unknown_ids_and_paths(http):
    missing = uuid.uuid4().hex
    assert error_of(http.get("/runs/get", {"run_id": missing})) == (
        404, "RESOURCE_DOES_NOT_EXIST", f"Run with id={missing} not found")
    assert error_of(http.post("/runs/log-parameter", {"run_id": missing, "key": "k", "value": "v"}))[0] == 404
    status, code, _ = error_of(http.get("/runs/nothing-here"))
    assert (status, code) == (404, "ENDPOINT_NOT_FOUND")


def test_param_and_tag_values_are_truncated_as_mlflow_does(http):
    run_id = new_run(http)["info"]["run_id"]
    assert http.post("/runs/log-parameter", {"run_id": run_id, "key": "long", "value": "x" * 7000}).status_code == 200
    params = http.get("/runs/get", {"run_id": run_id}).json()["run"]["data"]["params"]
    assert params == [{"key": "long", "value": "x" * 6000}]


def test_search_runs_max_results_bound(http):
    status, code, message = error_of(http.post("/runs/search", {"experiment_ids": ["0"], "max_results": 50001}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert message.startswith("Invalid value 50001 for parameter 'max_results' supplied")


def test_julia_client_shapes(http):
    """MLFlowClient.jl: GET with a JSON content type and no body, nulls, numeric enums."""
    experiment_id = new_experiment(http)
    response = http.post("/runs/create", {"experiment_id": experiment_id, "start_time": None, "run_name": None, "tags": []})
    run_id = response.json()["run"]["info"]["run_id"]
    got = requests.get(
        http.url + API + "/runs/get", params={"run_id": run_id},
        headers={"Content-Type": "application/json", "Content-Length": "0"}, timeout=10)
    assert got.status_code == 200 and got.json()["run"]["inputs"] == {}
    http.post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 2, "timestamp": int(time.time()), "step": None})
    metrics = http.get("/metrics/get-history", {"run_id": run_id, "metric_key": "m"}).json()["metrics"]
    assert metrics[0]["step"] == 0
    page = http.get("/runs/search", [("experiment_ids", experiment_id), ("run_view_type", "1"), ("page_token", "")]).json()
    assert [r["info"]["run_id"] for r in page["runs"]] == [run_id] and "next_page_token" not in page


def test_bulk_delete_and_restore_runs(http):
    experiment_id = new_experiment(http)
    run_ids = [
        http.post("/runs/create", {"experiment_id": experiment_id, "start_time": 1000 + i}).json()["run"]["info"]["run_id"]
        for i in range(5)
    ]
    assert http.post("/databricks/runs/delete-runs", {"experiment_id": experiment_id, "max_timestamp_millis": 1002,
                                                      "max_runs": 2}).json() == {"runs_deleted": 2}
    stages = [http.get("/runs/get", {"run_id": r}).json()["run"]["info"]["lifecycle_stage"] for r in run_ids]
    assert stages == ["deleted", "deleted", "active", "active", "active"]
    assert http.post("/databricks/runs/delete-runs", {"experiment_id": experiment_id,
                                                      "max_timestamp_millis": 1003}).json() == {"runs_deleted": 2}
    restored = http.post("/databricks/runs/restore-runs", {"experiment_id": experiment_id, "min_timestamp_millis": 0})
    assert restored.json() == {"runs_restored": 4}
    for bad in (0, -1, 10001):
        status, code, message = error_of(http.post(
            "/databricks/runs/delete-runs", {"experiment_id": experiment_id, "max_timestamp_millis": 1, "max_runs": bad}))
        assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "10000" in message
    assert error_of(http.post("/databricks/runs/restore-runs", {"experiment_id": experiment_id}))[:2] == (
        400, "INVALID_PARAMETER_VALUE")


def test_prometheus_metrics_count_ingestion(http, gateway):
    run_id = new_run(http)["info"]["run_id"]
    http.post("/runs/log-batch", {"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": s} for s in range(10)]})
    http.post("/runs/log-metric", {"run_id": run_id, "key": "bad$", "value": 1, "timestamp": 1})
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert samples["gateway_points_ingested_total"] >= 10
    assert samples['gateway_rejects_total{error_code="INVALID_PARAMETER_VALUE"}'] >= 1
    assert samples["gateway_flush_seconds_count"] >= 1
    assert samples["gateway_pending_entities"] == 0
    for name in ("gateway_pending_bytes", "gateway_open_run_buffers", "gateway_database_retries_total",
                 'gateway_flushes_total{trigger="immediate"}', "gateway_flush_entities_count"):
        assert name in samples
    # The refusals of the buffered writes are counted from 0, before any happened, so a rate sees the first.
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for write in ("log-metric", "log-parameter", "set-tag", "log-batch"):
            for status in ("429", "503"):
                assert f'gateway_requests_total{{endpoint="{prefix}/runs/{write}",status="{status}"}}' in samples


def test_every_worker_listens_once_the_server_answers(database_url):
    """Connections made as soon as a 2-worker server answers fall on both workers (a request id's
    first 16 characters name the process), not all on the first one to listen."""
    import http.client

    from tests.server import GatewayProcess

    process = GatewayProcess(database_url, "--workers", "2")
    try:
        connections = [http.client.HTTPConnection("127.0.0.1", process.port, timeout=10) for _ in range(16)]
        processes = set()
        for connection in connections:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            processes.add(response.getheader("X-Request-Id")[:16])
        for connection in connections:
            connection.close()
        # Each connection goes to a worker by a hash of its address: all 16 on one of two
        # listening workers would happen once in 32,768 starts.
        assert len(processes) == 2
    finally:
        assert process.stop() == 0


def test_several_workers_share_one_port(database_url):
    from tests.server import GatewayProcess

    process = GatewayProcess(database_url, "--workers", "2")
    try:
        session = requests.Session()
        experiment_id = session.post(process.url + API + "/experiments/create",
                                     json={"name": "workers-" + uuid.uuid4().hex}).json()["experiment_id"]
        run_id = session.post(process.url + API + "/runs/create",
                              json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
        for step in range(40):
            fresh = requests.post(process.url + API + "/runs/log-metric", timeout=10,
                                  json={"run_id": run_id, "key": "m", "value": step, "timestamp": step, "step": step})
            assert fresh.status_code == 200
        history = session.get(process.url + API + "/metrics/get-history",
                              params={"run_id": run_id, "metric_key": "m"}).json()["metrics"]
        assert [m["step"] for m in history] == list(range(40))
    finally:
        assert process.stop() == 0
