"""Structured logs and request ids; no body or log line carries SQL, a trace or a credential."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
import uuid

import pytest
import requests

from gateway.auth import CredentialsFile
from tests.server import GatewayProcess

API = "/api/2.0/mlflow"
PASSWORD = "pa55word-never-logged"
LEAKS = re.compile(r"Traceback|File \"|SELECT|INSERT|UPDATE |DELETE FROM|asyncpg|psycopg|sqlstate|\$\d", re.I)


@pytest.fixture(scope="module")
def logged(postgres, tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "credentials.json"
    credentials = CredentialsFile(path)
    tokens = {"write": credentials.add_token_user("writer", "write"), "read": credentials.add_token_user("reader", "read")}
    credentials.add_password_user("basic", "write", PASSWORD)
    database_url = asyncio.run(postgres.create_database())
    destination = tmp_path_factory.mktemp("logs-artifacts")
    process = GatewayProcess(database_url, "--auth-file", str(path), "--access-log", "all",
                             "--artifacts-destination", str(destination))
    yield process, tokens
    process.stop()


def test_request_ids(logged):
    gateway, tokens = logged
    auth = {"Authorization": "Bearer " + tokens["read"]}
    response = requests.get(gateway.url + API + "/experiments/search", headers={**auth, "X-Request-Id": "job-7:step.42"},
                            timeout=30)
    assert response.headers["X-Request-Id"] == "job-7:step.42"
    for offered in ("has spaces", "x" * 200, "quote\"d"):
        response = requests.get(gateway.url + API + "/experiments/search", headers={**auth, "X-Request-Id": offered},
                                timeout=30)
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
    # Errors, including refusals before authentication, carry one too.
    response = requests.get(gateway.url + API + "/experiments/search", timeout=30)
    assert response.status_code == 401 and re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def failing_requests(gateway: GatewayProcess, tokens: dict[str, str]) -> list[requests.Response]:
    writer = {"Authorization": "Bearer " + tokens["write"]}
    reader = {"Authorization": "Bearer " + tokens["read"]}
    basic = "Basic " + base64.b64encode(f"basic:{PASSWORD}x".encode()).decode()
    name = "logs-" + uuid.uuid4().hex
    with requests.Session() as session:
        def post(path, body=None, headers=None, raw=None):
            return session.post(gateway.url + API + path, json=None if raw is not None else body, data=raw,
                                headers={"Content-Type": "application/json", **(headers or {})}, timeout=30)

        experiment_id = post("/experiments/create", {"name": name}, writer).json()["experiment_id"]
        run_id = post("/runs/create", {"experiment_id": experiment_id}, writer).json()["run"]["info"]["run_id"]
        assert post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "private-value-1"}, writer).ok
        responses = [
            post("/runs/search", {}, {"Authorization": "Bearer " + tokens["write"][:-1] + "Z"}),  # wrong token
            post("/runs/search", {}, {"Authorization": basic}),  # wrong password
            post("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}, reader),  # 403
            post("/experiments/create", {"name": name}, writer),  # already exists
            post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "private-value-2"}, writer),
            post("/runs/log-metric", raw=b'{"run_id": "' + run_id.encode() + b'", "value": ', headers=writer),
            post("/runs/search", {"filter": "metrics.m >> 1 AND params.p = 'x'"}, writer),
            post("/runs/search", {"filter": "tags.t = 'x' OR 1=1 --"}, writer),
            post("/runs/search", {"experiment_ids": [experiment_id], "page_token": "bm90LWEtdG9rZW4="}, writer),
            post("/runs/log-batch", {"run_id": "0" * 32, "metrics": [{"key": "m", "value": 1, "timestamp": 1}]}, writer),
            post("/experiments/update", {"experiment_id": "99999999999999999999", "new_name": "n"}, writer),
            post("/runs/get", {}, writer),
            session.get(gateway.url + API + "/runs/get", params={"run_id": "' OR 'a'='a"}, headers=writer, timeout=30),
            session.get(gateway.url + "/health", headers={"Authorization": "Bearer " + "leak" * 3000}, timeout=30),
        ]
    return responses


def test_failing_requests_leak_nothing(logged):
    gateway, tokens = logged
    responses = failing_requests(gateway, tokens)
    statuses = [response.status_code for response in responses]
    assert statuses[:3] == [401, 401, 403]
    assert all(status >= 400 for status in statuses), statuses
    for response in responses:
        assert set(response.json()) == {"error_code", "message"}, response.text
        assert not LEAKS.search(response.text), response.text
        assert tokens["write"] not in response.text and PASSWORD not in response.text
    assert "private-value-1" in responses[4].text  # the run's own param, as MLflow reports it to its writers

    log = gateway.log()
    lines = [line for line in log.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for line in lines:
        assert not LEAKS.search(line), line
        for secret in (*tokens.values(), PASSWORD, "private-value", "leak" * 10, "OR 1=1"):
            assert secret not in line, line
    access = [entry for entry in entries if entry["logger"] == "gateway.access"]
    ids = {response.headers.get("X-Request-Id") for response in responses}
    logged_ids = {entry["request_id"] for entry in access}
    assert (ids - {None}) <= logged_ids
    refused = [entry for entry in access if entry["status"] == 403]
    assert refused and refused[-1]["user"] == "reader" and refused[-1]["path"] == API + "/runs/log-metric"
    assert {"time", "level", "logger", "message", "method", "duration_ms"} <= set(refused[-1])


ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def test_artifact_and_logged_model_failures_leak_nothing(logged):
    gateway, tokens = logged
    writer = {"Authorization": "Bearer " + tokens["write"]}
    reader = {"Authorization": "Bearer " + tokens["read"]}
    folder = uuid.uuid4().hex
    with requests.Session() as session:
        def put(path, data=b"private-bytes", headers=writer):
            return session.put(gateway.url + ARTIFACTS + "/" + path, data=data, headers=headers, timeout=30)

        assert put(f"{folder}/kept.txt").status_code == 200
        responses = {
            "escaping": put(f"{folder}/%2e%2e/%2e%2e/etc/passwd"),
            "too long": put(f"{folder}/" + "n" * 300),
            "under a file": put(f"{folder}/kept.txt/inner"),
            "read scope": put(f"{folder}/denied.txt", headers=reader),
            "missing": session.get(gateway.url + ARTIFACTS + f"/{folder}/absent.txt", headers=reader, timeout=30),
            "a folder": session.get(gateway.url + ARTIFACTS + f"/{folder}", headers=reader, timeout=30),
            "multipart": session.post(gateway.url + "/api/2.0/mlflow-artifacts/mpu/create/" + folder + "/x",
                                      json={"path": "x", "num_parts": 2}, headers=writer, timeout=30),
            "no model": session.get(gateway.url + API + "/logged-models/m-" + "0" * 32, headers=reader, timeout=30),
            "model file": session.get(gateway.url + API + "/logged-models/m-" + "0" * 32 + "/artifacts/files",
                                      headers=reader, timeout=30),
            "bad search": session.post(gateway.url + API + "/logged-models/search",
                                       json={"experiment_ids": ["1"], "filter": "metrics.x >> 1 OR 1=1 --"},
                                       headers=reader, timeout=30),
        }
    # An upload cut off mid-body.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(f"PUT {ARTIFACTS}/{folder}/cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {tokens['write']}\r\nContent-Length: 100000\r\n\r\n".encode()
                     + b"private-bytes" * 100)
        time.sleep(0.5)
    expected = {
        "escaping": (400, "INVALID_PARAMETER_VALUE"),
        "too long": (400, "INVALID_PARAMETER_VALUE"),
        "under a file": (400, "INVALID_PARAMETER_VALUE"),
        "read scope": (403, "PERMISSION_DENIED"),
        "missing": (404, "RESOURCE_DOES_NOT_EXIST"),
        "a folder": (400, "INVALID_PARAMETER_VALUE"),
        "multipart": (501, "NOT_IMPLEMENTED"),
        "no model": (404, "RESOURCE_DOES_NOT_EXIST"),
        "model file": (400, "BAD_REQUEST"),
        "bad search": (400, "INVALID_PARAMETER_VALUE"),
    }
    assert {name: (r.status_code, r.json().get("error_code")) for name, r in responses.items()} == expected
    for response in responses.values():
        assert set(response.json()) == {"error_code", "message"}, response.text
        assert not LEAKS.search(response.text), response.text
        # Neither the bytes sent nor the server's own directories.
        assert "private-bytes" not in response.text and "logs-artifacts" not in response.text

    by_id = {}
    deadline = time.monotonic() + 30
    while True:  # the cut-off upload is logged once the server has seen the connection close
        entries = [json.loads(line) for line in gateway.log().splitlines() if line.strip()]
        cut = [e for e in entries if e.get("path") == f"{ARTIFACTS}/{folder}/cut.bin"]
        if cut or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(e["status"], e["error_code"], e["user"]) for e in cut] == [(400, "BAD_REQUEST", "writer")]
    for entry in entries:
        line = json.dumps(entry)
        assert not LEAKS.search(line), line
        assert "private-bytes" not in line and tokens["write"] not in line, line
        assert entry["message"] != "unhandled error", line
        if entry.get("logger") == "gateway.access":
            by_id[entry["request_id"]] = entry
    for name, response in responses.items():
        entry = by_id[response.headers["X-Request-Id"]]
        assert (entry["status"], entry["error_code"]) == expected[name], name
