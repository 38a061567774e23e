"""Artifacts outside the proxy, and a logged model's files over HTTP.

An experiment created with its own artifact_location (a directory or a file://
URI) gives its runs artifact URIs the client writes to directly; artifacts/list
on the gateway must list them as `mlflow server` does. The logged-model routes
(`logged-models/<id>/artifacts/directories` and `.../files`) list and send a
logged model's files wherever they live.
"""

from __future__ import annotations

import http.client
import json
import os
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import mlflow
import pytest
from mlflow import MlflowClient

from tests.server import GatewayProcess


@pytest.fixture(scope="module")
def destination(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("proxy-destination")


@pytest.fixture(scope="module")
def server(database_url, destination):
    process = GatewayProcess(database_url, "--artifacts-destination", str(destination))
    yield process
    process.stop()


@pytest.fixture
def client(server, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield MlflowClient(server.url)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def call(server, path: str, query: dict | None = None):
    """GET ``path`` (sent byte for byte) and decode a JSON answer; other bodies come back as bytes."""
    target = path + ("?" + urlencode(query) if query else "")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        data = response.read()
        if "json" in (response.getheader("Content-Type") or ""):
            return response.status, json.loads(data), response
        return response.status, data, response
    finally:
        connection.close()


def list_run(server, run_id: str, path: str | None = None):
    query = {"run_id": run_id} if path is None else {"run_id": run_id, "path": path}
    status, payload, _ = call(server, "/api/2.0/mlflow/artifacts/list", query)
    return status, payload


def as_rows(file_infos) -> list[tuple]:
    return [(f.path, f.is_dir, f.file_size) for f in file_infos]


def json_rows(payload: dict) -> list[tuple]:
    return [(f["path"], f["is_dir"], f.get("file_size")) for f in payload.get("files", [])]


def log_local_run(client: MlflowClient, artifact_location: str, tmp_path: Path) -> mlflow.entities.Run:
    """A run in an experiment of its own location; the client writes its files there itself."""
    experiment_id = client.create_experiment("own-location-" + uuid.uuid4().hex[:8], artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    source = tmp_path / "source"
    (source / "inner").mkdir(parents=True)
    (source / "weights.bin").write_bytes(b"\x01" * 300)
    (source / "inner" / "notes.txt").write_text("inner notes")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(source), artifact_path="model")
        mlflow.log_text("a summary", "summary.txt")
    return client.get_run(run.info.run_id)


@pytest.mark.parametrize("as_uri", [False, True], ids=["directory", "file-uri"])
def test_artifacts_list_reads_an_experiments_own_location(client, server, destination, tmp_path, as_uri):
    location = tmp_path / "own store"
    run = log_local_run(client, location.as_uri() if as_uri else str(location), tmp_path)
    run_id = run.info.run_id
    assert not run.info.artifact_uri.startswith("mlflow-artifacts:")
    on_disk = location / run.info.run_id / "artifacts"
    assert (on_disk / "summary.txt").read_text() == "a summary"

    status, payload = list_run(server, run_id)
    assert status == 200
    assert payload["root_uri"] == run.info.artifact_uri
    # The gateway lists what the client sees in the same place, entry for entry.
    assert json_rows(payload) == as_rows(client.list_artifacts(run_id)) == [
        ("model", True, None),
        ("summary.txt", False, 9),
    ]
    status, payload = list_run(server, run_id, "model")
    assert json_rows(payload) == as_rows(client.list_artifacts(run_id, "model")) == [
        ("model/inner", True, None),
        ("model/weights.bin", False, 300),
    ]
    assert json_rows(list_run(server, run_id, "model/inner")[1]) == [("model/inner/notes.txt", False, 11)]
    # A file, a missing folder: empty, as MLflow lists them.
    assert list_run(server, run_id, "summary.txt") == (200, {"root_uri": run.info.artifact_uri})
    assert list_run(server, run_id, "no/such/folder") == (200, {"root_uri": run.info.artifact_uri})
    # Nothing was written to the proxy's destination for this run.
    assert not list(destination.rglob(run_id))


def test_own_location_paths_stay_inside_the_run(client, server, tmp_path):
    location = tmp_path / "store"
    run = log_local_run(client, str(location), tmp_path)
    run_id = run.info.run_id
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    os.symlink(outside, location / run_id / "artifacts" / "link")
    for path in ("../", "model/../../x", "%2E%2E/%2E%2E", "/etc", "link"):
        assert list_run(server, run_id, path) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"})


def test_a_run_whose_location_is_gone_lists_empty(client, server, tmp_path):
    location = tmp_path / "removed"
    run = log_local_run(client, str(location), tmp_path)
    for entry in sorted(location.rglob("*"), reverse=True):
        entry.rmdir() if entry.is_dir() else entry.unlink()
    assert list_run(server, run.info.run_id) == (200, {"root_uri": run.info.artifact_uri})
    # Listing never creates the folder it reads.
    assert not (location / run.info.run_id).exists()


def test_unsupported_scheme_is_mlflows_error(client, server):
    experiment_id = client.create_experiment("gs-" + uuid.uuid4().hex[:8], "gs://some-bucket/exp")
    run = client.create_run(experiment_id)
    status, payload = list_run(server, run.info.run_id)
    assert status == 501
    assert payload["error_code"] == "NOT_IMPLEMENTED"
    assert payload["message"].startswith(
        f"Could not find a registered artifact repository for: {run.info.artifact_uri}. "
        "Currently registered schemes are: ['', 'file', 'mlflow-artifacts', 'http', 'https'"
    )


MODEL_ROUTES = ("/api/2.0/mlflow/logged-models", "/ajax-api/2.0/mlflow/logged-models")


def model_with_files(client: MlflowClient, experiment_id: str, tmp_path: Path):
    model = client.create_logged_model(experiment_id, name="scorer")
    files = tmp_path / ("files-" + model.model_id)
    (files / "data").mkdir(parents=True)
    (files / "MLmodel").write_text("flavors: {}\n")
    (files / "data" / "weights.bin").write_bytes(bytes(range(256)) * 20)
    client.log_model_artifacts(model.model_id, str(files))
    return client.get_logged_model(model.model_id)


@pytest.mark.parametrize("own_location", [False, True], ids=["proxied", "own-location"])
def test_logged_model_files_listed_and_downloaded(client, server, tmp_path, own_location):
    if own_location:
        experiment_id = client.create_experiment("models-own-" + uuid.uuid4().hex[:8], str(tmp_path / "models"))
    else:
        experiment_id = client.create_experiment("models-" + uuid.uuid4().hex[:8])
    model = model_with_files(client, experiment_id, tmp_path)
    assert model.artifact_location.startswith("mlflow-artifacts:") != own_location

    for base in MODEL_ROUTES:
        status, payload, _ = call(server, f"{base}/{model.model_id}/artifacts/directories")
        assert status == 200
        assert payload["root_uri"] == model.artifact_location
        assert json_rows(payload) == as_rows(client.list_logged_model_artifacts(model.model_id)) == [
            ("MLmodel", False, 12),
            ("data", True, None),
        ]
        status, payload, _ = call(
            server, f"{base}/{model.model_id}/artifacts/directories", {"artifact_directory_path": "data"}
        )
        assert json_rows(payload) == [("data/weights.bin", False, 5120)]

        status, body, response = call(
            server, f"{base}/{model.model_id}/artifacts/files", {"artifact_file_path": "data/weights.bin"}
        )
        assert (status, body) == (200, bytes(range(256)) * 20)
        assert response.getheader("Content-Disposition") == 'attachment; filename="weights.bin"'
        assert response.getheader("Content-Type") == "application/octet-stream"


def test_logged_model_file_errors(client, server, tmp_path):
    model = model_with_files(client, client.create_experiment("model-errors-" + uuid.uuid4().hex[:8]), tmp_path)
    files = f"/ajax-api/2.0/mlflow/logged-models/{model.model_id}/artifacts/files"
    directories = f"/api/2.0/mlflow/logged-models/{model.model_id}/artifacts/directories"
    assert call(server, files)[:2] == (
        400,
        {"error_code": "BAD_REQUEST", "message": 'Request must include the "artifact_file_path" query parameter.'},
    )
    invalid = (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"})
    for path in ("../../../etc/passwd", "data/%2e%2e/%2e%2e/x", "/etc/passwd", "file:///etc/passwd"):
        assert call(server, files, {"artifact_file_path": path})[:2] == invalid
        assert call(server, directories, {"artifact_directory_path": path})[:2] == invalid
    assert call(server, files, {"artifact_file_path": "data"})[:2] == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Artifact path refers to a directory, not a file: 'data'"},
    )
    status, payload, _ = call(server, files, {"artifact_file_path": "data/missing.bin"})
    assert (status, payload["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert payload["message"].startswith("No such artifact: '") and payload["message"].endswith("data/missing.bin'")

    unknown = "m-" + uuid.uuid4().hex
    not_found = (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Logged model with ID '{unknown}' not found."})
    assert call(server, f"/api/2.0/mlflow/logged-models/{unknown}/artifacts/directories")[:2] == not_found
    assert call(server, f"/ajax-api/2.0/mlflow/logged-models/{quote(unknown)}/artifacts/files",
                {"artifact_file_path": "MLmodel"})[:2] == not_found
