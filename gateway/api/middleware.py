"""Maps every failure to MLflow's error JSON; counts requests and rejects."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from gateway import telemetry
from gateway.errors import HTTP_STATUS_BY_CODE, GatewayError, TransientStoreError

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


def error_response(error_code: str, message: str, status: int | None = None, retry_after: float | None = None):
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
    try:
        response = await handler(request)
    except GatewayError as exc:
        telemetry.REJECTS.labels(exc.error_code).inc()
        response = error_response(exc.error_code, exc.message, exc.status, exc.retry_after)
        if exc.status in (408, 413):
            # The rest of the body was not read: the connection cannot carry another request.
            response.force_close()
    except TransientStoreError:
        telemetry.REJECTS.labels("TEMPORARILY_UNAVAILABLE").inc()
        response = error_response(
            "TEMPORARILY_UNAVAILABLE", "The database is unavailable right now. Retry later.", 503, retry_after=2
        )
    except web.HTTPRequestEntityTooLarge as exc:
        telemetry.REJECTS.labels("INVALID_PARAMETER_VALUE").inc()
        response = error_response(
            "INVALID_PARAMETER_VALUE", f"Request body too large: {exc.text}", status=413
        )
    except web.HTTPNotFound:
        response = error_response("ENDPOINT_NOT_FOUND", f"No API endpoint found for {request.method} {request.path}", 404)
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(
            "BAD_REQUEST", f"The method {exc.method} is not allowed for {request.path}", status=405
        )
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        telemetry.REJECTS.labels("INTERNAL_ERROR").inc()
        response = error_response("INTERNAL_ERROR", "Internal server error.", 500)
    telemetry.REQUESTS.labels(_endpoint(request), str(response.status)).inc()
    return response
