"""The artifact proxy over raw HTTP: path escapes, missing files, aborted uploads, multipart fallback."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.server import GatewayProcess

PROXY = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory) -> Path:
    # The destination is one level down, so a file escaping it would land in the parent.
    return tmp_path_factory.mktemp("destination-parent") / "artifacts"


@pytest.fixture(scope="module")
def server(database_url, artifact_root):
    process = GatewayProcess(database_url, "--artifacts-destination", str(artifact_root))
    yield process
    process.stop()


def call(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """Send ``path`` byte for byte (http.client does not normalise ``..``) and decode the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        content_type = response.getheader("Content-Type") or ""
        payload = json.loads(data) if data and "json" in content_type else data
        return response.status, payload, response
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "1/run/artifacts/../../../escaped.txt",
        "1/run/%2e%2e/%2e%2e/%2e%2e/escaped.txt",
        "1/run/%252e%252e/%252e%252e/%252e%252e/escaped.txt",
        "1/run/..%5C..%5C..%5Cescaped.txt",
        "%2Fetc/escaped.txt",
        "C:%5Cescaped.txt",
        "1/run/a%23b.txt",
        "file:%2F%2F%2Ftmp/escaped.txt",
    ],
)
def test_escaping_paths_are_rejected(server, artifact_root, path):
    status, payload, _ = call(server, "PUT", f"{PROXY}/{path}", body=b"must not be written")
    assert (status, payload) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"})
    for method in ("GET", "DELETE"):
        status, payload, _ = call(server, method, f"{PROXY}/{path}")
        assert (status, payload) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"})
    assert not list(artifact_root.parent.rglob("escaped.txt"))


def test_listing_paths_are_checked(server):
    status, payload, _ = call(server, "GET", f"{PROXY}?path=1/..%2F..%2Fetc")
    assert (status, payload["message"]) == (400, "Invalid path")
    run = mlflow_run(server)
    status, payload, _ = call(server, "GET", f"/api/2.0/mlflow/artifacts/list?run_id={run}&path=../other")
    assert (status, payload["message"]) == (400, "Invalid path")
    status, payload, _ = call(server, "GET", "/api/2.0/mlflow/artifacts/list")
    assert status == 400
    assert payload["message"].startswith("Missing value for required parameter 'run_id'.")
    status, payload, _ = call(server, "GET", "/api/2.0/mlflow/artifacts/list?run_id=0123")
    assert (status, payload) == (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=0123 not found"})


def mlflow_run(server) -> str:
    body = json.dumps({"experiment_id": "0"}).encode()
    status, payload, _ = call(
        server, "POST", "/api/2.0/mlflow/runs/create", body=body, headers={"Content-Type": "application/json"}
    )
    assert status == 200
    return payload["run"]["info"]["run_id"]


def test_upload_download_list_delete(server):
    base = f"{PROXY}/0/{uuid.uuid4().hex}/artifacts"
    assert call(server, "PUT", f"{base}/d/one.txt", body=b"first")[0] == 200
    assert call(server, "PUT", f"{base}/d/one.txt", body=b"replaced")[0] == 200
    assert call(server, "PUT", f"{base}/top.json", body=b"{}")[0] == 200
    status, data, response = call(server, "GET", f"{base}/d/one.txt")
    assert (status, data) == (200, b"replaced")
    assert response.getheader("Content-Disposition") == 'attachment; filename="one.txt"'
    status, payload, _ = call(server, "GET", f"{PROXY}?path={base.removeprefix(PROXY + '/')}")
    assert payload == {
        "files": [{"path": "d", "is_dir": True}, {"path": "top.json", "is_dir": False, "file_size": 2}]
    }
    # A file lists as empty, as in MLflow.
    assert call(server, "GET", f"{PROXY}?path={base.removeprefix(PROXY + '/')}/top.json")[1] == {}
    status, payload, _ = call(server, "GET", f"{base}/d")
    assert status == 400
    assert payload["message"] == f"Artifact path refers to a directory, not a file: '{base.removeprefix(PROXY + '/')}/d'"
    assert call(server, "DELETE", f"{base}/d")[0] == 200
    assert call(server, "DELETE", f"{base}/never-existed")[:2] == (200, {})
    status, payload, _ = call(server, "GET", f"{base}/d/one.txt")
    missing = f"{base.removeprefix(PROXY + '/')}/d/one.txt"
    assert (status, payload) == (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"No such artifact: '{missing}'"})


def test_aborted_upload_leaves_nothing(server, artifact_root):
    folder = f"0/{uuid.uuid4().hex}/artifacts"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            (
                f"PUT {PROXY}/{folder}/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        for _ in range(4):
            sock.sendall(b"\0" * (1024 * 1024))
        # Wait until the server has started writing the upload, then drop the connection.
        deadline = time.monotonic() + 30
        while not list((artifact_root / folder).glob(".gateway-upload-*")):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    deadline = time.monotonic() + 30
    while list((artifact_root / folder).iterdir()):
        assert time.monotonic() < deadline, f"left behind: {list((artifact_root / folder).iterdir())}"
        time.sleep(0.05)
    status, payload, _ = call(server, "GET", f"{PROXY}/{folder}/big.bin")
    assert status == 404
    assert call(server, "GET", f"{PROXY}?path={folder}")[1] == {}


def test_multipart_is_declined_and_the_client_falls_back(server, tmp_path, monkeypatch):
    status, payload, _ = call(
        server,
        "POST",
        "/api/2.0/mlflow-artifacts/mpu/create/0/x/artifacts",
        body=json.dumps({"path": "f.bin", "num_parts": 2}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert (status, payload) == (
        501,
        {
            "error_code": "NOT_IMPLEMENTED",
            "message": "Multipart upload is not supported for the current artifact repository",
        },
    )
    status, info, _ = call(server, "GET", "/api/3.0/mlflow/server-info")
    assert status == 200
    assert (info["multipart_uploads_enabled"], info["multipart_downloads_enabled"]) == (False, False)
    assert call(server, "GET", "/ajax-api/3.0/mlflow/server-info")[1] == info

    # A client told to use multipart uploads gets the answer above and sends one PUT instead.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1024")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    client = MlflowClient(server.url)
    run = client.create_run("0")
    local = tmp_path / "weights.bin"
    local.write_bytes(bytes(range(256)) * 64)
    client.log_artifact(run.info.run_id, str(local))
    downloaded = client.download_artifacts(run.info.run_id, "weights.bin", str(tmp_path / "out"))
    assert Path(downloaded).read_bytes() == bytes(range(256)) * 64
