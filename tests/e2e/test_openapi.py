"""/openapi.json describes every route the application registers, from the handlers' own structs."""

from __future__ import annotations

import inspect
import re
import sys

import requests

from gateway.api import decoding
from gateway.api.openapi import operation_of
from gateway.app import create_app
from gateway.config import Settings


def registered(app) -> set[tuple[str, str]]:
    return {(route.method.lower(), route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}


def test_every_registered_route_is_described(gateway):
    spec = requests.get(gateway.url + "/openapi.json", timeout=30).json()
    assert spec["openapi"] == "3.1.0"
    described = {(method, path) for path, item in spec["paths"].items() for method in item}
    routes = registered(create_app(Settings(), "postgresql://unused"))
    assert routes - described == set()
    assert described - routes == set()
    assert ("post", "/api/2.0/mlflow/runs/log-metric") in described
    assert ("get", "/openapi.json") in described


def test_descriptions_come_from_the_structs(gateway):
    spec = requests.get(gateway.url + "/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    log_metric = spec["paths"]["/api/2.0/mlflow/runs/log-metric"]["post"]
    assert log_metric["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/LogMetric"}
    assert set(schemas["LogMetric"]["properties"]) >= {"run_id", "key", "value", "timestamp", "step"}
    get_run = spec["paths"]["/api/2.0/mlflow/runs/get"]["get"]
    assert {p["name"] for p in get_run["parameters"]} == {"run_id", "run_uuid"}
    assert get_run["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunResponse"}
    assert schemas["ErrorResponse"]["required"] == ["error_code", "message"]
    assert "security" not in spec  # this server runs without authentication


def test_each_handler_decodes_the_struct_it_declares():
    app = create_app(Settings(), "postgresql://unused")
    checked = 0
    for route in app.router.routes():
        found = operation_of(route.handler)
        if found is None or found.request is None:
            continue
        source = inspect.getsource(route.handler)
        # A handler may leave the reading to a shared reader of gateway.api.decoding.
        for name in re.findall(r"decoding\.(\w+)\(", source):
            source += inspect.getsource(getattr(decoding, name))
        # ... and the answer to a request-free function the GraphQL API calls too.
        module = sys.modules[route.handler.__module__]
        for name in re.findall(r"\b(answer_\w+)\(", source):
            source += inspect.getsource(getattr(module, name))
        assert f"schemas.{found.request.__name__})" in source, route.handler.__name__
        if found.response is not None and found.response.__name__ != "Empty":
            assert f"schemas.{found.response.__name__}(" in source, route.handler.__name__
        checked += 1
    assert checked >= 26
