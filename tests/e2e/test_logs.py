"""Structured logs and request ids; no body or log line carries SQL, a trace or a credential."""

from __future__ import annotations

import asyncio
import base64
import json
import re
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
    process = GatewayProcess(database_url, "--auth-file", str(path), "--access-log", "all")
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
