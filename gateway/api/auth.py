"""Authentication and scopes on every path but /health.

A request carries either ``Authorization: Bearer <token>`` (what the stock
client sends from MLFLOW_TRACKING_TOKEN) or ``Authorization: Basic ...``
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD). No or wrong credentials
answer 401 UNAUTHENTICATED with a WWW-Authenticate challenge; a user whose
scope is too small gets 403 PERMISSION_DENIED. Both in MLflow's error JSON.
"""

from __future__ import annotations

import base64
import binascii
import re

from aiohttp import web

from gateway import telemetry
from gateway.api.middleware import PRINCIPAL_KEY, error_response
from gateway.auth import Principal, Verifier, scope_allows

VERIFIER: web.AppKey[Verifier] = web.AppKey("verifier", Verifier)

OPEN_PATHS = frozenset({"/health"})
# One challenge a header: browsers read only a header's first scheme, and must see Basic
# to ask for a user name and password.
CHALLENGES = ('Basic realm="mlflow", charset="UTF-8"', 'Bearer realm="mlflow"')

# The part of a path after its API prefix (/api/2.0/mlflow, /ajax-api/2.0/mlflow,
# /api/3.0/mlflow, /api/2.0/mlflow-artifacts, ...).
_API_PATH = re.compile(r"^/(?:ajax-)?api/\d+\.\d+/mlflow(?:-artifacts)?(/.*)$")

# Paths that change many runs at once.
ADMIN_PATHS = frozenset({"/databricks/runs/delete-runs", "/databricks/runs/restore-runs"})
# POSTs that only read.
READ_POSTS = frozenset(
    {
        "/runs/search",
        "/experiments/search",
        "/logged-models/search",
        "/runs/export-csv",
        "/registered-models/get-latest-versions",
        # the web UI's reads: GraphQL (its mutations search too) and the calls of its pages
        "/graphql",
        "/experiments/search-datasets",
        "/traces/search",
        "/traces/metrics",
        "/traces/batchGetInfos",
        "/datasets/search",
        "/ui-telemetry",
    }
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(method: str, path: str) -> str:
    """The scope a request needs: admin for bulk run changes, read for reads, else write."""
    match = _API_PATH.match(path)
    tail = match.group(1) if match else path
    if tail in ADMIN_PATHS:
        return "admin"
    if method in _READ_METHODS or tail in READ_POSTS:
        return "read"
    return "write"


def _unauthenticated(request: web.Request, message: str) -> web.Response:
    telemetry.REJECTS.labels("UNAUTHENTICATED").inc()
    response = error_response("UNAUTHENTICATED", message, 401, request=request)
    for challenge in CHALLENGES:
        response.headers.add("WWW-Authenticate", challenge)
    return response


async def _principal(verifier: Verifier, header: str) -> Principal | None:
    scheme, _, credentials = header.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        return await verifier.bearer(credentials)
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, colon, password = decoded.partition(":")
        if not colon:
            return None
        return await verifier.basic(name, password)
    return None


def authentication(verifier: Verifier):
    """The middleware that admits a request only with credentials of a large enough scope."""

    @web.middleware
    async def authenticate(request: web.Request, handler):
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization")
        if not header:
            return _unauthenticated(
                request,
                "Authentication required: send a bearer token (MLFLOW_TRACKING_TOKEN) or HTTP basic "
                "credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."
            )
        principal = await _principal(verifier, header)
        if principal is None:
            return _unauthenticated(request, "Invalid credentials.")
        request[PRINCIPAL_KEY] = principal
        needed = required_scope(request.method, request.path)
        if not scope_allows(principal.scope, needed):
            telemetry.REJECTS.labels("PERMISSION_DENIED").inc()
            return error_response(
                "PERMISSION_DENIED",
                f"User '{principal.name}' has scope '{principal.scope}'; {request.method} {request.path} "
                f"needs scope '{needed}'.",
                403,
                request=request,
            )
        return await handler(request)

    return authenticate
