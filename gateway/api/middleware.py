"""Maps every failure to MLflow's error JSON; counts requests and rejects; request ids and the access log."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

import msgspec
from aiohttp import web

from gateway import telemetry
from gateway.errors import HTTP_STATUS_BY_CODE, GatewayError, TransientStoreError

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


def error_response(
    error_code: str,
    message: str,
    status: int | None = None,
    retry_after: float | None = None,
    request: web.Request | None = None,
):
    """MLflow's error JSON; given the request, its error code also goes to the access log."""
    if request is not None:
        request[ERROR_CODE_KEY] = error_code
    body = _encode({"error_code": error_code, "message": message})
    response = web.Response(
        body=body, status=status or HTTP_STATUS_BY_CODE.get(error_code, 500), content_type="application/json"
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response


def _endpoint(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def mlflow_errors(request: web.Request, handler):
    """Answer GatewayError with MLflow's JSON; never let SQL or a trace reach the client."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except GatewayError as exc:
        telemetry.REJECTS.labels(exc.error_code).inc()
        response = error_response(exc.error_code, exc.message, exc.status, exc.retry_after, request)
        if exc.status in (408, 413):
            # The rest of the body was not read: the connection cannot carry another request.
            response.force_close()
    except TransientStoreError:
        telemetry.DATABASE_ERRORS.labels("unreachable").inc()
        telemetry.REJECTS.labels("TEMPORARILY_UNAVAILABLE").inc()
        response = error_response(
            "TEMPORARILY_UNAVAILABLE", "The database is unavailable right now. Retry later.", 503, retry_after=2,
            request=request,
        )
    except web.HTTPRequestEntityTooLarge as exc:
        telemetry.REJECTS.labels("INVALID_PARAMETER_VALUE").inc()
        response = error_response(
            "INVALID_PARAMETER_VALUE", f"Request body too large: {exc.text}", status=413, request=request
        )
    except web.HTTPNotFound:
        response = error_response(
            "ENDPOINT_NOT_FOUND", f"No API endpoint found for {request.method} {request.path}", 404, request=request
        )
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(
            "BAD_REQUEST", f"The method {exc.method} is not allowed for {request.path}", status=405, request=request
        )
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error", extra={"request_id": request.get(REQUEST_ID_KEY)})
        telemetry.REJECTS.labels("INTERNAL_ERROR").inc()
        response = error_response("INTERNAL_ERROR", "Internal server error.", 500, request=request)
    endpoint = _endpoint(request)
    telemetry.REQUESTS.labels(endpoint, str(response.status)).inc()
    telemetry.REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    return response


REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = "request_id"
ERROR_CODE_KEY = "error_code"
"""The MLflow error code a request was answered with, for the access log."""
PRINCIPAL_KEY = "principal"
"""Where the authentication middleware leaves the caller (a gateway.auth.Principal)."""
# A client's own request id is kept when it is short and plain; otherwise a new one is made.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
access_log = logging.getLogger("gateway.access")


def _request_id_source():
    """New request ids: 32 hex characters, a random half per process and a counter.

    Unique across processes and restarts like a random UUID, without a call to
    the system's random source on every request.
    """
    prefix = os.urandom(8).hex()
    return (f"{prefix}{number:016x}" for number in itertools.count())


_new_request_ids = _request_id_source()


def request_ids(log_all: bool, log_errors: bool):
    """The outermost middleware: a request id on every answer, and the access log.

    Args:
        log_all: log every request.
        log_errors: log requests answered with a status of 400 or more.

    The access log has the request id, method, path (never the query string,
    which holds the caller's values), status, MLflow error code, duration and
    the authenticated user; never a body, a header or a credential.
    """

    @web.middleware
    async def with_request_id(request: web.Request, handler):
        offered = request.headers.get(REQUEST_ID_HEADER)
        request_id = offered if offered is not None and _SANE_REQUEST_ID.match(offered) else next(_new_request_ids)
        request[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = error_response("BAD_REQUEST", exc.reason, exc.status, request=request)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            response = error_response("INTERNAL_ERROR", "Internal server error.", 500, request=request)
        response.headers[REQUEST_ID_HEADER] = request_id
        if log_all or (log_errors and response.status >= 400):
            principal = request.get(PRINCIPAL_KEY)
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "error_code": request.get(ERROR_CODE_KEY),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "user": principal.name if principal is not None else None,
                    "remote": request.remote,
                },
            )
        return response

    return with_request_id
