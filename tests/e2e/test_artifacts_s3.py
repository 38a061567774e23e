"""An S3 artifacts destination, against moto's S3 server on 127.0.0.1 (boto3 and moto are test dependencies)."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid

import boto3
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from moto import server as moto_server

from tests.server import GatewayProcess, free_port

BUCKET = "gateway-artifacts"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, **_boto_credentials())
    client.create_bucket(Bucket=BUCKET)
    return client


def _boto_credentials() -> dict:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="module")
def s3_gateway(database_url, s3_endpoint, bucket):
    env = {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}
    process = GatewayProcess(database_url, "--artifacts-destination", f"s3://{BUCKET}/mlflow", env=env)
    yield process
    process.stop()


@pytest.fixture
def client(s3_gateway, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for name in CREDENTIALS:
        # The client must not need S3 credentials: everything goes through the gateway.
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(s3_gateway.url)
    return MlflowClient(s3_gateway.url)


def test_artifacts_in_s3_through_the_gateway(client, bucket, tmp_path):
    run = client.create_run(client.create_experiment("s3-" + uuid.uuid4().hex[:8]))
    run_id = run.info.run_id
    big = tmp_path / "checkpoint.bin"
    # Three multipart parts (8 MiB each), the last one short.
    with open(big, "wb") as handle:
        for block in range(20):
            handle.write(hashlib.sha256(str(block).encode()).digest() * (1024 * 1024 // 32))
    small = tmp_path / "metrics.json"
    small.write_text('{"acc": 0.9}')
    client.log_artifact(run_id, str(big), "ckpt")
    client.log_artifact(run_id, str(small))

    listed = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir, f.file_size) for f in listed] == [("ckpt", True, None), ("metrics.json", False, 12)]
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "ckpt")] == [
        ("ckpt/checkpoint.bin", 20 * 1024 * 1024)
    ]
    out = client.download_artifacts(run_id, "ckpt/checkpoint.bin", str(tmp_path / "out"))
    assert _sha256(out) == _sha256(big)

    key = f"mlflow/{run.info.experiment_id}/{run_id}/artifacts/ckpt/checkpoint.bin"
    assert bucket.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 20 * 1024 * 1024
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    with pytest.raises(mlflow.exceptions.MlflowException, match="Failed to download artifacts from path 'nope.txt'"):
        client.download_artifacts(run_id, "nope.txt", str(tmp_path / "none"))


def test_aborted_s3_upload_leaves_no_object(s3_gateway, bucket):
    folder = f"0/{uuid.uuid4().hex}/artifacts"
    with socket.create_connection(("127.0.0.1", s3_gateway.port), timeout=30) as sock:
        sock.sendall(
            (
                f"PUT /api/2.0/mlflow-artifacts/artifacts/{folder}/partial.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        for _ in range(20):
            sock.sendall(b"\1" * (1024 * 1024))
        deadline = time.monotonic() + 30
        while not bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
            assert time.monotonic() < deadline, "the multipart upload never started"
            time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    deadline = time.monotonic() + 30
    while bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
        assert time.monotonic() < deadline, "the multipart upload was not aborted"
        time.sleep(0.05)
    listed = bucket.list_objects_v2(Bucket=BUCKET, Prefix=f"mlflow/{folder}/")
    assert listed.get("KeyCount", 0) == 0


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def test_artifacts_list_reads_an_experiments_own_bucket(client, s3_gateway, bucket):
    """An experiment stored at s3://... of its own: the job writes there, the gateway lists it."""
    experiment_id = client.create_experiment("own-s3-" + uuid.uuid4().hex[:8], f"s3://{BUCKET}/team-a")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    assert run.info.artifact_uri == f"s3://{BUCKET}/team-a/{run_id}/artifacts"
    prefix = f"team-a/{run_id}/artifacts"
    for key, body in (("model/MLmodel", b"flavors: {}\n"), ("model/data/w.bin", b"\0" * 64), ("plot.png", b"png")):
        bucket.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=body)

    def listed(path=None):
        query = {"run_id": run_id} if path is None else {"run_id": run_id, "path": path}
        response = requests.get(f"{s3_gateway.url}/api/2.0/mlflow/artifacts/list", params=query, timeout=30)
        return response.status_code, response.json()

    status, payload = listed()
    assert status == 200
    assert payload == {
        "root_uri": run.info.artifact_uri,
        "files": [{"path": "model", "is_dir": True}, {"path": "plot.png", "is_dir": False, "file_size": 3}],
    }
    assert listed("model")[1]["files"] == [
        {"path": "model/MLmodel", "is_dir": False, "file_size": 12},
        {"path": "model/data", "is_dir": True},
    ]
    assert listed("nothing/here") == (200, {"root_uri": run.info.artifact_uri})
    assert listed("../other-run") == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"})

    missing = client.create_run(client.create_experiment("no-bucket-" + uuid.uuid4().hex[:8], "s3://no-such-bucket/x"))
    response = requests.get(
        f"{s3_gateway.url}/api/2.0/mlflow/artifacts/list", params={"run_id": missing.info.run_id}, timeout=30
    )
    assert (response.status_code, response.json()) == (
        404,
        {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": f"The bucket of {missing.info.artifact_uri} does not exist.",
        },
    )


def test_logged_model_file_streamed_from_s3(client, s3_gateway, tmp_path):
    model = client.create_logged_model(client.create_experiment("s3-model-" + uuid.uuid4().hex[:8]), name="m")
    files = tmp_path / "model"
    files.mkdir()
    payload = hashlib.sha256(b"weights").digest() * 40_000
    (files / "weights.bin").write_bytes(payload)
    client.log_model_artifacts(model.model_id, str(files))
    base = f"{s3_gateway.url}/ajax-api/2.0/mlflow/logged-models/{model.model_id}/artifacts"
    listed = requests.get(f"{base}/directories", timeout=30).json()
    assert listed["files"] == [{"path": "weights.bin", "is_dir": False, "file_size": len(payload)}]
    response = requests.get(f"{base}/files", params={"artifact_file_path": "weights.bin"}, timeout=30)
    assert (response.status_code, response.content) == (200, payload)
    assert response.headers["Content-Length"] == str(len(payload))
