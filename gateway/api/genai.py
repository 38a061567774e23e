"""The GenAI side of MLflow's web UI, which the gateway does not offer.

Traces, sessions, judges and scorers, evaluation datasets, the playground, the
AI gateway and the assistant are not stored or served here. Their pages still
open: each list or status call they make is answered as a `mlflow server` with
nothing of that kind answers it (an empty list, no assistant, no telemetry), so
the pages show their empty state and no error. Calls that would create or run
something are not routed, and answer 404 ENDPOINT_NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from gateway.api.openapi import operation
from gateway.api.routing import Route

_encode = msgspec.json.Encoder().encode

_EMPTY: dict[str, Any] = {}

# (method, path under /ajax-api, the answer's JSON)
_EMPTY_ANSWERS: list[tuple[str, str, Any]] = [
    # the assistant side panel: no provider configured
    ("GET", "/3.0/mlflow/assistant/config", {"providers": {}, "projects": {}, "remote_access_allowed": False}),
    ("PUT", "/3.0/mlflow/assistant/config", {"providers": {}, "projects": {}, "remote_access_allowed": False}),
    ("GET", "/3.0/mlflow/assistant/providers", {"providers": [], "resolved": None, "gateway_vendor_options": {}}),
    # traces, sessions and their charts
    ("POST", "/3.0/mlflow/traces/search", _EMPTY),
    ("POST", "/4.0/mlflow/traces/search", _EMPTY),
    ("POST", "/3.0/mlflow/traces/metrics", {"data_points": []}),
    ("POST", "/4.0/mlflow/traces/metrics", {"data_points": []}),
    ("POST", "/3.0/mlflow/traces/batchGetInfos", {"trace_infos": []}),
    # evaluation datasets, judges, review queues
    ("POST", "/3.0/mlflow/datasets/search", _EMPTY),
    ("GET", "/3.0/mlflow/scorers/list", _EMPTY),
    ("GET", "/3.0/mlflow/scorers/online-configs", _EMPTY),
    ("GET", "/3.0/mlflow/mcp-servers", {"mcp_servers": []}),
    ("GET", "/3.0/mlflow/review-queues/list", _EMPTY),
    ("GET", "/3.0/mlflow/label-schemas/list", _EMPTY),
    # the AI gateway
    ("GET", "/3.0/mlflow/gateway/endpoints/list", _EMPTY),
    ("GET", "/3.0/mlflow/gateway/secrets/list", _EMPTY),
    ("GET", "/3.0/mlflow/gateway/secrets/config", {"secrets_available": False, "using_default_passphrase": False}),
    ("GET", "/3.0/mlflow/gateway/endpoints/bindings/list", _EMPTY),
    ("GET", "/3.0/mlflow/gateway/model-definitions/list", _EMPTY),
    ("GET", "/3.0/mlflow/gateway/guardrails/list", _EMPTY),
    ("GET", "/3.0/mlflow/gateway/budgets/list", _EMPTY),
    ("GET", "/3.0/mlflow/gateway/supported-providers", {"providers": []}),
    ("GET", "/2.0/mlflow/webhooks", _EMPTY),
    # the runs page asks the AI gateway of MLflow's deployments server for its endpoints
    ("GET", "/2.0/mlflow/gateway-proxy", {"endpoints": []}),
    # the UI's own usage telemetry: off
    ("GET", "/3.0/mlflow/ui-telemetry", {"disable_ui_events": [], "disable_ui_telemetry": True, "ui_rollout_percentage": 0}),
    ("POST", "/3.0/mlflow/ui-telemetry", _EMPTY),
]


def _answer(body: bytes):
    @operation(response=None, summary="A page of MLflow's GenAI side, not offered here: its empty answer.")
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return handler


# The GenAI pages' list and status calls, each with its empty answer.
ROUTES = [Route(method, "/ajax-api" + path, _answer(_encode(answer))) for method, path, answer in _EMPTY_ANSWERS]
