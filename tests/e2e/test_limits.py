"""Limits on every input: body size, header and URL size, slow clients, open connections."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid

import pytest
import requests

from tests.server import GatewayProcess

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(scope="module")
def limited(postgres, tmp_path_factory):
    database_url = asyncio.run(postgres.create_database())
    destination = tmp_path_factory.mktemp("limits-artifacts")
    process = GatewayProcess(
        database_url, "--idle-timeout-s", "2", "--body-timeout-s", "2", "--max-header-bytes", "2048",
        "--max-body-bytes", "3000000", "--artifacts-destination", str(destination),
    )
    process.destination = destination
    yield process
    process.stop()


def error_of(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error_code", "message"}
    return response.status_code, body["error_code"], body["message"]


def connect(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    return sock


def read_response(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def new_run(gateway: GatewayProcess) -> str:
    experiment = requests.post(gateway.url + API + "/experiments/create",
                               json={"name": f"limits-{time.monotonic_ns()}"}, timeout=30).json()["experiment_id"]
    return requests.post(gateway.url + API + "/runs/create", json={"experiment_id": experiment},
                         timeout=30).json()["run"]["info"]["run_id"]


def test_body_over_the_endpoints_bound_is_413(limited):
    run_id = new_run(limited)
    body = json.dumps({"run_id": run_id, "key": "k", "value": "x" * (1024 * 1024 + 1)})
    response = requests.post(limited.url + API + "/runs/set-tag", data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)
    status, code, message = error_of(response)
    assert (status, code) == (413, "INVALID_PARAMETER_VALUE")
    assert message == f"Request body too large ({len(body)} bytes): this endpoint accepts at most 1048576 bytes."
    tags = requests.get(limited.url + API + "/runs/get", params={"run_id": run_id}, timeout=30).json()["run"]["data"]["tags"]
    assert "k" not in {tag["key"] for tag in tags}


def test_chunked_body_over_the_bound_is_413(limited):
    run_id = new_run(limited)
    payload = json.dumps({"run_id": run_id, "key": "k", "value": "x" * (1024 * 1024 + 1)}).encode()

    def chunks():
        for start in range(0, len(payload), 65536):
            yield payload[start:start + 65536]

    response = requests.post(limited.url + API + "/runs/set-tag", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=30)
    status, code, message = error_of(response)
    assert (status, code) == (413, "INVALID_PARAMETER_VALUE")
    assert "at most 1048576 bytes" in message


def test_the_server_wide_bound_holds_for_log_batch(limited):
    body = b'{"run_id": "' + b"0" * 3_000_001 + b'"}'
    status, code, message = error_of(requests.post(limited.url + API + "/runs/log-batch", data=body,
                                                   headers={"Content-Type": "application/json"}, timeout=30))
    assert (status, code) == (413, "INVALID_PARAMETER_VALUE") and "at most 3000000 bytes" in message


def test_get_with_a_large_body_is_413(limited):
    response = requests.get(limited.url + API + "/experiments/search", data=b"x" * 70_000, timeout=30)
    assert error_of(response)[:2] == (413, "INVALID_PARAMETER_VALUE")


def test_header_and_url_too_long_are_431(limited):
    response = requests.get(limited.url + API + "/experiments/search", headers={"X-Big": "y" * 4096}, timeout=30)
    status, code, message = error_of(response)
    assert (status, code, message) == (431, "BAD_REQUEST", "The request line or a header field is longer than 2048 bytes.")
    response = requests.get(limited.url + API + "/experiments/get-by-name", params={"experiment_name": "n" * 4096},
                            timeout=30)
    assert error_of(response)[:2] == (431, "BAD_REQUEST")
    # A long header holding a credential is neither echoed nor logged.
    secret = "Bearer " + "s3cr3t" * 1000
    response = requests.get(limited.url + "/health", headers={"Authorization": secret}, timeout=30)
    assert response.status_code == 431 and "s3cr3t" not in response.text
    assert "s3cr3t" not in limited.log()


def test_malformed_request_line_is_400_json(limited):
    with connect(limited) as sock:
        sock.sendall(b"GET /\x00bad HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_response(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"  # the version is unknown when the request line is not understood
    assert json.loads(body) == {"error_code": "BAD_REQUEST", "message": "Malformed HTTP request."}


def test_slow_headers_are_cut_off_while_others_are_served(limited):
    request = (b"POST /api/2.0/mlflow/runs/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nX-Padding: " + b"p" * 400 + b"\r\nContent-Length: 2\r\n\r\n{}")
    outcome: dict[str, object] = {}

    def trickle():
        sent = 0
        with connect(limited) as sock:
            try:
                for byte in request:
                    sock.sendall(bytes([byte]))
                    sent += 1
                    time.sleep(0.05)
                outcome["answer"] = sock.recv(65536)
            except OSError as exc:
                outcome["error"] = type(exc).__name__
        outcome["sent"] = sent

    thread = threading.Thread(target=trickle)
    thread.start()
    served = 0
    with requests.Session() as session:
        while thread.is_alive() and served < 1000:
            response = session.post(limited.url + API + "/experiments/search", json={}, timeout=30)
            assert response.status_code == 200
            served += 1
    thread.join(60)
    assert not thread.is_alive()
    assert served > 0
    # The server closed the connection long before the whole request was sent.
    assert "error" in outcome or outcome.get("answer") == b""
    assert outcome["sent"] < len(request)


def test_slow_body_gets_408(limited):
    with connect(limited) as sock:
        sock.sendall(b"POST /api/2.0/mlflow/runs/log-metric HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        raw = read_response(sock)  # the body never completes; the server answers and closes
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body) == {
        "error_code": "BAD_REQUEST", "message": "The request body was not received within 2 seconds."
    }


def test_artifact_upload_is_streamed_past_every_body_bound(limited):
    """4 MiB, over the server-wide 3,000,000 bytes, sent in pauses that add up to more than the body timeout."""
    block = bytes(range(256)) * 4096  # 1 MiB
    path = f"{uuid.uuid4().hex}/big.bin"

    def slow_blocks():
        for index in range(4):
            if index:
                time.sleep(0.7)  # each pause well inside the 2 s timeout; all of them past it
            yield block

    response = requests.put(limited.url + ARTIFACTS + "/" + path, data=slow_blocks(), timeout=60)
    assert (response.status_code, response.json()) == (200, {})
    downloaded = requests.get(limited.url + ARTIFACTS + "/" + path, timeout=60)
    assert downloaded.status_code == 200
    assert downloaded.content == block * 4


def test_stalled_artifact_upload_gets_408_and_stores_nothing(limited):
    folder = uuid.uuid4().hex
    with connect(limited) as sock:
        sock.sendall(f"PUT {ARTIFACTS}/{folder}/stalled.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"x" * 5000)
        raw = read_response(sock)  # no more bytes come; the server answers and closes
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body) == {
        "error_code": "BAD_REQUEST", "message": "No part of the request body arrived for 2 seconds."
    }
    listing = requests.get(limited.url + ARTIFACTS, params={"path": folder}, timeout=30)
    assert (listing.status_code, listing.json()) == (200, {})
    assert list((limited.destination / folder).iterdir()) == []  # not even a partial upload


def test_artifact_name_too_long_for_the_filesystem_is_400(limited):
    response = requests.put(limited.url + ARTIFACTS + "/" + uuid.uuid4().hex + "/" + "n" * 300, data=b"x",
                            timeout=30)
    assert error_of(response) == (
        400, "INVALID_PARAMETER_VALUE", "Invalid path: a name in it is longer than the artifact storage allows."
    )
    assert error_of(requests.get(limited.url + ARTIFACTS + "/" + "n" * 300, timeout=30))[:2] == (
        400, "INVALID_PARAMETER_VALUE"
    )


def test_connections_past_the_bound_get_503(postgres):
    database_url = asyncio.run(postgres.create_database())
    gateway = GatewayProcess(database_url, "--max-connections", "4")
    held = []
    try:
        for _ in range(4):
            sock = connect(gateway)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with connect(gateway) as extra:
            raw = read_response(extra)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in head
        assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
        for sock in held:
            sock.close()
        held.clear()
        # Room again once connections close.
        for _ in range(20):
            try:
                if requests.get(gateway.url + "/health", timeout=10).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not accept connections after others closed")
    finally:
        for sock in held:
            sock.close()
        gateway.stop()
