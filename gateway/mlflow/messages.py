"""The error messages several of MLflow's checks share.

MLflow words its errors in two ways, and the gateway keeps the distinction:

* The server's request checks (a required field is absent, a field has the
  wrong JSON type) end with " See the API docs for more information about
  request parameters." :func:`missing_value` and :func:`invalid_type` build
  those.
* The store's rules (key characters, lengths, batch limits, duplicate keys)
  carry no such suffix.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import InvalidParameter

REQUEST_SUFFIX = " See the API docs for more information about request parameters."
BAD_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
    " spaces ( ), colon(:) and slashes (/)."
)
BAD_PATH = (
    "Names may be treated as files in certain cases, and must not resolve to other"
    " names when treated as such. This name would resolve to {!r}"
)


def render(value: object) -> str:
    """A value as MLflow quotes it in messages: compact JSON with sorted keys."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(str(value))


def invalid_value(param: str, value: object, detail: str | None = None) -> str:
    if detail:
        return f"Invalid value {render(value)} for parameter '{param}' supplied: {detail}"
    return f"Invalid value {render(value)} for parameter '{param}' supplied."


def too_long(name: str, limit: int) -> InvalidParameter:
    return InvalidParameter(f"'{name}' exceeds the maximum length of {limit} characters")


def join_path(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def missing_value(param: str) -> InvalidParameter:
    """The error for a required request field that is absent, null or empty.

    Args:
        param: the field's path in the request, e.g. ``run_id`` or ``metrics[3].value``.

    Returns:
        The error to raise.
    """
    return InvalidParameter(f"Missing value for required parameter '{param}'.{REQUEST_SUFFIX}")


def invalid_type(param: str, value: object) -> InvalidParameter:
    """The error for a request field whose JSON value has the wrong type.

    The value is quoted as compact JSON (``"abc"``, ``12``, ``true``, ``null``,
    ``[1,2]``, ``{"a":1}``) and its Python type named (``str``, ``bool``,
    ``NoneType``...). MLflow puts two spaces after "supplied:"; so does this.

    Args:
        param: the field's path in the request.
        value: the decoded JSON value.

    Returns:
        The error to raise.
    """
    detail = f" Hint: Value was of type '{type(value).__name__}'."
    return InvalidParameter(invalid_value(param, value, detail) + REQUEST_SUFFIX)


def required(value: Any, param: str) -> Any:
    """Check that a required request field is present and not empty.

    Args:
        value: the decoded value; ``None`` when the field was absent or null.
        param: the field's path in the request.

    Returns:
        ``value``, unchanged.

    Raises:
        InvalidParameter: ``value`` is ``None`` or the empty string.
    """
    if value is None or value == "":
        raise missing_value(param)
    return value
