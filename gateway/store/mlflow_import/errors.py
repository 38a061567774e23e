"""The importer's one error."""

from __future__ import annotations

from gateway.errors import GatewayError


class ImportRefused(GatewayError):
    """The source or the target cannot be imported as asked; nothing was copied by this call."""

    def __init__(self, message: str):
        super().__init__(message, "INVALID_PARAMETER_VALUE")
