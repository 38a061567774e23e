"""The one error root of the gateway and MLflow's error codes.

Every failure a client can see is a :class:`GatewayError`: it carries MLflow's
``error_code``, the HTTP status MLflow answers with for that code, and whether
the client may retry. The HTTP layer turns it into MLflow's error JSON; nothing
else (SQL text, stack traces) ever reaches a client.
"""

from __future__ import annotations

# MLflow's error code -> the HTTP status its server answers with.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_CONFLICT": 409,
    "ABORTED": 409,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "RESOURCE_EXHAUSTED": 429,
    "TEMPORARILY_UNAVAILABLE": 503,
    "NOT_IMPLEMENTED": 501,
    "INTERNAL_ERROR": 500,
}


class GatewayError(Exception):
    """An error with MLflow's error code, its HTTP status and retry advice.

    Args:
        message: the text the client sees; never SQL, a trace or another user's data.
        error_code: one of MLflow's error codes (keys of ``HTTP_STATUS_BY_CODE``).
        retry_after: seconds a client should wait before retrying, for retriable errors.
    """

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", *, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return HTTP_STATUS_BY_CODE.get(self.error_code, 500)

    @property
    def retriable(self) -> bool:
        return self.status in (429, 503)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_code}: {self.message!r})"


class InvalidParameter(GatewayError):
    def __init__(self, message: str):
        super().__init__(message, "INVALID_PARAMETER_VALUE")


class NotFound(GatewayError):
    def __init__(self, message: str):
        super().__init__(message, "RESOURCE_DOES_NOT_EXIST")


class AlreadyExists(GatewayError):
    def __init__(self, message: str):
        super().__init__(message, "RESOURCE_ALREADY_EXISTS")


class Unavailable(GatewayError):
    """The write could not be made durable in time; the client should retry."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message, "TEMPORARILY_UNAVAILABLE", retry_after=retry_after)


class Overloaded(GatewayError):
    """Pending writes are at their bound; the client should slow down and retry."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message, "REQUEST_LIMIT_EXCEEDED", retry_after=retry_after)


class TransientStoreError(Exception):
    """The database could not be reached or failed over; the operation may be retried.

    Raised by ``store/`` only; the ingest flusher retries it, handlers map it to 503.
    """
