"""What the relay sends upstream: credentials, retries after 429/5xx, --ack upstream, replays.

A small recording upstream (a real aiohttp server on 127.0.0.1) answers as
MLflow does and keeps every request it got, so the tests can look at the calls
themselves; the replay test uses a stock `mlflow server`.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import uuid

import aiohttp
import msgspec
import pytest
import requests
from aiohttp import web

from tests.e2e.flood import API
from tests.relay_processes import RelayProcess
from tests.server import free_port

pytestmark = pytest.mark.timeout(600)

RUN = "0123456789abcdef0123456789abcdef"


class RecordingUpstream:
    """An MLflow-shaped upstream: one active run, log-batch answers from a script, every call kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str], bytes]] = []
        self.batch_answers: list[tuple[int, dict, dict]] = []  # (status, body, headers) used first, then 200
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    def batches(self) -> list[dict]:
        return [msgspec.json.decode(body) for method, path, _, body in self.calls if path.endswith("/runs/log-batch")]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((request.method, request.path, dict(request.headers), body))
        if request.path.endswith("/runs/get"):
            run_id = request.query.get("run_id")
            if run_id != RUN:
                return web.json_response(
                    {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run with id={run_id} not found"}, status=404
                )
            return web.json_response({"run": {"info": {"run_id": RUN, "lifecycle_stage": "active"}, "data": {}}})
        if request.path.endswith("/runs/log-batch"):
            if self.batch_answers:
                status, payload, headers = self.batch_answers.pop(0)
                return web.json_response(payload, status=status, headers=headers)
            return web.json_response({})
        return web.json_response({"echo": request.path, "authorization": request.headers.get("Authorization")})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def recording_upstream():
    upstream = RecordingUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


async def post(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + API + path, json=body, headers=headers or {}) as response:
            return response.status, await response.json(content_type=None)


async def test_credentials_go_upstream_but_never_into_the_log(recording_upstream):
    secret = "s3cr3t-" + uuid.uuid4().hex
    relay = RelayProcess(recording_upstream.url, "--batch-linger-ms", "0", env={"MLFLOW_TRACKING_TOKEN": secret})
    try:
        status, _ = await post(relay.url, "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1, "timestamp": 5},
                               headers={"Authorization": "Bearer the-clients-own"})
        assert status == 200
        # A pass-through call carries the relay's credentials, not the client's.
        status, echoed = await post(relay.url, "/experiments/search", {}, headers={"Authorization": "Basic Y2xpZW50"})
        assert (status, echoed["authorization"]) == (200, f"Bearer {secret}")
        await post(relay.url, "/runs/search", {})  # delivers the spool first
        assert recording_upstream.batches() == [
            {"run_id": RUN, "metrics": [{"key": "m", "value": 1.0, "timestamp": 5, "step": 0}]}
        ]
        assert {headers.get("Authorization") for _, _, headers, _ in recording_upstream.calls} == {f"Bearer {secret}"}
    finally:
        relay.stop()
    assert secret not in relay.log()


async def test_basic_credentials(recording_upstream):
    relay = RelayProcess(
        recording_upstream.url, env={"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw"}
    )
    try:
        _, echoed = await post(relay.url, "/experiments/search", {})
        assert echoed["authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()
    finally:
        relay.stop()


async def test_429_and_503_are_retried_after_retry_after(recording_upstream):
    recording_upstream.batch_answers = [
        (429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}, {"Retry-After": "1"}),
        (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}, {}),
    ]
    relay = RelayProcess(recording_upstream.url, "--batch-linger-ms", "0", "--retry-backoff-max-s", "0.2")
    try:
        status, _ = await post(relay.url, "/runs/log-batch", {
            "run_id": RUN, "metrics": [{"key": "m", "value": s, "timestamp": 1, "step": s} for s in range(5)],
        })
        assert status == 200
        for _ in range(200):
            if relay.metric("gateway_relay_spool_entities") == 0:
                break
            await asyncio.sleep(0.1)
        batches = recording_upstream.batches()
        assert len(batches) == 3 and batches[0] == batches[1] == batches[2]  # the same batch, retried twice
        assert relay.metric("gateway_relay_upstream_retries_total") == 2
        assert relay.metric("gateway_relay_upstream_calls_total", 'endpoint="runs/log-batch",status="429"') == 1
        assert relay.metric("gateway_relay_dead_letters_total") == 0
    finally:
        relay.stop()


async def test_a_read_that_cannot_see_its_writes_is_refused_not_stale(recording_upstream):
    recording_upstream.batch_answers = [
        (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}, {}) for _ in range(1000)
    ]
    relay = RelayProcess(recording_upstream.url, "--request-deadline-s", "1", "--retry-backoff-max-s", "0.2",
                         "--shutdown-drain-s", "0")
    try:
        status, _ = await post(relay.url, "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1, "timestamp": 5})
        assert status == 200
        async with aiohttp.ClientSession() as session:
            async with session.get(relay.url + API + "/runs/get", params={"run_id": RUN}) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                assert (await response.json())["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert relay.metric("gateway_relay_spool_entities") == 1  # still held, to be delivered later
    finally:
        relay.stop()


async def test_ack_upstream_answers_after_delivery_and_with_the_upstreams_refusal(recording_upstream):
    relay = RelayProcess(recording_upstream.url, "--ack", "upstream", "--batch-linger-ms", "0")
    try:
        status, _ = await post(relay.url, "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1, "timestamp": 5})
        assert status == 200
        assert len(recording_upstream.batches()) == 1  # delivered before the answer
        recording_upstream.batch_answers = [
            (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "refused upstream"}, {})
        ]
        status, body = await post(relay.url, "/runs/log-parameter", {"run_id": RUN, "key": "p", "value": "v"})
        assert (status, body) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "refused upstream"})
        status, body = await post(relay.url, "/runs/log-metric", {"run_id": uuid.uuid4().hex, "key": "m", "value": 1,
                                                                  "timestamp": 5})
        assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    finally:
        relay.stop()


def test_a_replayed_spool_does_not_duplicate_points_in_mlflow(mlflow_server):
    server = mlflow_server
    experiment = requests.post(server.url + API + "/experiments/create", json={"name": "replay-" + uuid.uuid4().hex[:8]}, timeout=30).json()
    run_id = requests.post(
        server.url + API + "/runs/create", json={"experiment_id": experiment["experiment_id"]}, timeout=30
    ).json()["run"]["info"]["run_id"]
    # Writes linger in the spool; the relay is killed before it sends them.
    relay = RelayProcess(server.url, "--batch-linger-ms", "600000")
    for step in range(20):
        answer = requests.post(relay.url + API + "/runs/log-metric", json={
            "run_id": run_id, "key": "loss", "value": step / 4, "timestamp": 1000 + step, "step": step,
        }, timeout=30)
        assert answer.status_code == 200
    relay.kill()
    copy = tempfile.mkdtemp(prefix="relay-spool-copy-")
    shutil.copytree(relay.spool_dir, copy, dirs_exist_ok=True)
    # The same acknowledged batch is delivered twice: from the spool and from its copy.
    for spool_dir in (relay.spool_dir, copy):
        again = RelayProcess(server.url, "--batch-linger-ms", "0", spool_dir=spool_dir)
        try:
            history = requests.get(again.url + API + "/metrics/get-history",
                                   params={"run_id": run_id, "metric_key": "loss"}, timeout=60).json()
        finally:
            again.stop()
        assert [(m["step"], m["value"]) for m in history["metrics"]] == [(s, s / 4) for s in range(20)]


async def test_sigterm_delivers_the_spool_before_exit(recording_upstream):
    relay = RelayProcess(recording_upstream.url, "--batch-linger-ms", "600000")
    for step in range(3):
        status, _ = await post(relay.url, "/runs/log-metric",
                               {"run_id": RUN, "key": "m", "value": step, "timestamp": 5, "step": step})
        assert status == 200
    assert recording_upstream.batches() == []  # still lingering
    assert await asyncio.to_thread(relay.stop) == 0
    assert recording_upstream.batches() == [{"run_id": RUN, "metrics": [
        {"key": "m", "value": float(step), "timestamp": 5, "step": step} for step in range(3)
    ]}]
