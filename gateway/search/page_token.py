"""Page tokens for keyset pagination.

A token carries the sort values of the last row of a page (its keyset) and a
fingerprint of the search that produced it. The next page starts strictly
after that keyset, so runs written between two page requests neither shift
rows between pages nor repeat them. Clients treat the token as opaque.

Layout: URL-safe base64 of the JSON ``{"f": fingerprint, "k": [value, ...]}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid

from gateway.errors import InvalidParameter
from gateway.mlflow.numbers import in_int64

# The types a keyset value can have, by the SQL type of its column.
RANK = "integer"  # 0: a value, 1: NaN or missing, 2: missing (metrics)
FLOAT = "double precision"
BIGINT = "bigint"
TEXT = "text"
UUID = "uuid"


def fingerprint(**search) -> str:
    """A short digest of what defines a search, so a token cannot be replayed on another one.

    Args:
        search: JSON-serialisable description (kind, filter, order_by, view type, ids).

    Returns:
        32 hex characters.
    """
    canonical = json.dumps(search, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _to_json(value: object, sql_type: str) -> object:
    if value is None:
        return None
    if sql_type == UUID:
        return uuid.UUID(str(value)).hex
    if sql_type == FLOAT:
        return float(value)
    if sql_type in (RANK, BIGINT):
        return int(value)
    return str(value)


def encode(search_fingerprint: str, values: list, types: tuple[str, ...]) -> str:
    """Build the token for the page after the row whose keyset is ``values``.

    Args:
        search_fingerprint: from :func:`fingerprint`.
        values: the keyset of the last row of the page, one per entry of ``types``.
        types: the SQL type of each keyset column.

    Returns:
        The opaque token.
    """
    payload = {"f": search_fingerprint, "k": [_to_json(v, t) for v, t in zip(values, types, strict=True)]}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(text.encode()).decode()


def _invalid(detail: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid page token, {detail}")


def _from_json(value: object, sql_type: str) -> object:
    """Check one keyset value from a token; raise ValueError when it has the wrong type."""
    if sql_type == RANK:
        if type(value) is not int or value not in (0, 1, 2):
            raise ValueError
        return value
    if value is None:
        return None
    if sql_type == FLOAT:
        if type(value) not in (int, float) or (isinstance(value, float) and math.isnan(value)):
            raise ValueError
        return float(value)
    if sql_type == BIGINT:
        if type(value) is not int or not in_int64(value):
            raise ValueError
        return value
    if sql_type == UUID:
        if type(value) is not str or len(value) != 32:
            raise ValueError
        return uuid.UUID(hex=value)
    if type(value) is not str:
        raise ValueError
    return value


def decode(token: str, search_fingerprint: str, types: tuple[str, ...], ranked: tuple[bool, ...]) -> list:
    """Read a token back into a keyset.

    Args:
        token: as the client sent it.
        search_fingerprint: the fingerprint of the search being asked for.
        types: the SQL type of each keyset column.
        ranked: for each keyset column, whether the column before it is its rank;
            a ranked value is NULL exactly when its rank is not 0.

    Returns:
        The keyset values, converted to their Python types.

    Raises:
        InvalidParameter: the token does not decode, or belongs to another search.
    """
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _invalid("could not base64-decode") from None
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("could not parse its contents") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), list):
        raise _invalid("could not parse its contents")
    if payload.get("f") != search_fingerprint:
        raise _invalid(
            "it belongs to a different search (the filter, order_by, view type or experiment ids changed)"
        )
    values = payload["k"]
    if len(values) != len(types):
        raise _invalid("could not parse its contents")
    keyset = []
    try:
        for index, (value, sql_type) in enumerate(zip(values, types, strict=True)):
            converted = _from_json(value, sql_type)
            if ranked[index] and (converted is None) != (keyset[-1] != 0):
                raise ValueError
            if not ranked[index] and sql_type != RANK and converted is None:
                raise ValueError
            keyset.append(converted)
    except (ValueError, TypeError):
        raise _invalid("could not parse its contents") from None
    return keyset
