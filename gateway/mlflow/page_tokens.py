"""MLflow's offset page tokens: base64 of the JSON ``{"offset": n}``.

MLflow's SQL stores page the registry searches and a metric's history this way,
and the gateway answers those with the same tokens and the same messages. (Run
and experiment searches use keyset tokens of the gateway's own; see
:mod:`gateway.search.page_token`.)
"""

from __future__ import annotations

import base64
import binascii
import json

from gateway.errors import InvalidParameter
from gateway.mlflow.limits import INT64_MAX


def offset_token(offset: int, **fields: object) -> str:
    """MLflow's token for the page starting at ``offset``: base64 of ``{"offset": n}``.

    Args:
        offset: where the next page starts (above 0).
        fields: more JSON-serialisable fields to carry, read back by :func:`read_offset_token`.
    """
    return base64.b64encode(json.dumps({"offset": offset, **fields}).encode()).decode()


def start_offset(token: str | None) -> int:
    """The offset a page token carries; 0 without one.

    Raises:
        InvalidParameter: the token is not one of ours (MLflow's messages).
    """
    return read_offset_token(token)["offset"] if token else 0


def read_offset_token(token: str) -> dict:
    """A token's fields, its ``offset`` checked and made an integer.

    Raises:
        InvalidParameter: the token is not one of ours (MLflow's messages).
    """
    try:
        decoded = base64.b64decode(token)
    except (binascii.Error, ValueError):
        raise InvalidParameter("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(decoded)
    except ValueError:
        raise InvalidParameter(f"Invalid page token, decoded value={decoded!r}") from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if not offset:
        raise InvalidParameter(f"Invalid page token, parsed value={parsed}")
    try:
        number = int(offset)
    except (TypeError, ValueError):
        raise InvalidParameter(f"Invalid page token, not stringable {offset}") from None
    if not 0 < number <= INT64_MAX:
        raise InvalidParameter(f"Invalid page token, parsed value={parsed}")
    return {**parsed, "offset": number}
