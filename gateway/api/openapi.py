"""The OpenAPI 3.1 description of every path, generated from the structs the handlers use.

Each handler is marked with :func:`operation`, naming the request struct it
decodes and the response struct it encodes; ``/openapi.json`` is built from the
routes registered on the application and those structs' JSON Schema (msgspec
emits it), so the description cannot drift from the code. A handler without a
mark does not appear, and a test fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import msgspec
from aiohttp import web

from gateway import __version__
from gateway.api import schemas

OPENAPI_VERSION = "3.1.0"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_ATTRIBUTE = "gateway_operation"


@dataclass(frozen=True)
class Operation:
    """What a handler reads and answers.

    Attributes:
        request: the struct decoded from the JSON body (or, for GET, the query string).
        response: the struct of a 200 answer; None for a non-JSON answer.
        summary: one line for the description.
        max_body_bytes: largest body accepted (413 past it); None for the server-wide bound.
        content_type: the media type of a 200 answer; ``*/*`` for a file sent as it is stored.
        streamed_body: the body is raw bytes the handler streams itself (an artifact upload): it
            is not held to a size bound, only to the body timeout between chunks.
        succeeds: False for a call this server declines (it always answers MLflow's error JSON).
    """

    request: type[msgspec.Struct] | None
    response: type[msgspec.Struct] | None
    summary: str
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES
    content_type: str = "application/json"
    streamed_body: bool = False
    succeeds: bool = True


def operation(
    request: type[msgspec.Struct] | None = None,
    response: type[msgspec.Struct] | None = schemas.Empty,
    *,
    summary: str,
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    content_type: str = "application/json",
    streamed_body: bool = False,
    succeeds: bool = True,
) -> Callable:
    """Mark a handler with the structs it uses (see :class:`Operation`)."""

    def mark(handler: Callable) -> Callable:
        found = Operation(request, response, summary, max_body_bytes, content_type, streamed_body, succeeds)
        setattr(handler, _ATTRIBUTE, found)
        return handler

    return mark


def operation_of(handler: Any) -> Operation | None:
    """The mark of a handler, or None."""
    return getattr(handler, _ATTRIBUTE, None)


def _query_parameter(field: msgspec.inspect.Field) -> dict[str, Any]:
    kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
    if any(isinstance(kind, msgspec.inspect.ListType) for kind in kinds):
        schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    else:
        # A query string carries text; the handler converts and checks it.
        schema = {"type": "string"}
    return {"name": field.encode_name, "in": "query", "required": False, "schema": schema}


# A binary body or answer (OpenAPI 3.1 describes raw bytes by their media type alone;
# the string schema lets generators produce bytes for it).
_BINARY = {"type": "string", "format": "binary"}
_PATH_PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PATH_PARAMETER.findall(path)
    ]


def _operation_id(method: str, path: str) -> str:
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_")


def document(app: web.Application, *, authentication: bool) -> dict[str, Any]:
    """The OpenAPI document of every marked route of ``app``."""
    marked: list[tuple[str, str, Operation]] = []
    for route in app.router.routes():
        found = operation_of(route.handler)
        if route.method == "HEAD" or found is None:
            continue
        marked.append((route.method, route.resource.canonical, found))
    types = {schemas.ErrorResponse}
    for _, _, found in marked:
        types.update(t for t in (found.request, found.response) if t is not None)
    ordered = sorted(types, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(ordered, ref_template="#/components/schemas/{name}")
    ref_of = dict(zip(ordered, refs))
    error = {
        "description": "MLflow's error JSON.",
        "content": {"application/json": {"schema": ref_of[schemas.ErrorResponse]}},
    }

    paths: dict[str, dict[str, Any]] = {}
    for method, path, found in sorted(marked, key=lambda item: (item[1], item[0])):
        if found.response is not None:
            answer = {"schema": ref_of[found.response]}
        elif found.content_type == "application/json":
            answer = {"schema": {"type": "object"}}
        elif found.content_type == "*/*":
            answer = {"schema": _BINARY}
        else:
            answer = {"schema": {"type": "string"}}
        if found.succeeds:
            responses = {"200": {"description": "Success.", "content": {found.content_type: answer}}, "default": error}
        else:
            responses = {"501": {**error, "description": "Declined: NOT_IMPLEMENTED."}, "default": error}
        entry: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": found.summary,
            "responses": responses,
        }
        parameters = _path_parameters(path)
        if found.request is not None:
            if method == "GET":
                info = msgspec.inspect.type_info(found.request)
                parameters += [_query_parameter(field) for field in info.fields]
            else:
                entry["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": ref_of[found.request]}},
                }
        elif found.streamed_body:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/octet-stream": {"schema": _BINARY}},
            }
        if parameters:
            entry["parameters"] = parameters
        if path == "/health":
            entry["security"] = []
        paths.setdefault(path, {})[method.lower()] = entry

    spec: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MLflow ingestion gateway",
            "version": __version__,
            "description": "MLflow's tracking REST API, as served by the ingestion gateway.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if authentication:
        spec["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        }
        spec["security"] = [{"bearer": []}, {"basic": []}]
    return spec


_DOCUMENT: web.AppKey[bytes] = web.AppKey("openapi_document", bytes)


def serve_document(app: web.Application, *, authentication: bool) -> None:
    """Register /openapi.json; the document is built once, when the application starts."""

    async def prepare(app: web.Application) -> None:
        app[_DOCUMENT] = msgspec.json.encode(document(app, authentication=authentication))

    app.on_startup.append(prepare)
    app.router.add_get("/openapi.json", openapi_json)


@operation(summary="This description (OpenAPI 3.1).", response=None)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_DOCUMENT], content_type="application/json")
