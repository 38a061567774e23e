"""Translation of asyncpg's failures into the gateway's errors (only store/ sees asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from gateway.errors import TransientStoreError

# SQLSTATE classes worth retrying: connection exceptions (08), operator
# intervention such as admin shutdown or crash recovery (57), insufficient
# resources (53), and serialization failures / deadlocks (40).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "57", "53", "40")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database was unreachable or busy, so the work may be retried."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError)):
        return True
    if isinstance(
        exc,
        (
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.InterfaceError,
            # raised when the connection is lost in the middle of an operation
            asyncpg.exceptions.InternalClientError,
        ),
    ):
        return True
    if isinstance(exc, asyncpg.exceptions.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


@contextlib.contextmanager
def translate_transient():
    """Re-raise connection-level failures as TransientStoreError (without their SQL text)."""
    try:
        yield
    except TransientStoreError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise TransientStoreError(f"database unavailable: {type(exc).__name__}") from exc
        raise
