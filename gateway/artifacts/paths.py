"""Artifact paths: MLflow's path-safety rule and the mapping of artifact URIs to store paths.

Pure: no I/O. A store path is relative to the artifact destination, uses ``/``
separators and never leaves it.
"""

from __future__ import annotations

import pathlib
import posixpath
import re
from urllib.parse import unquote, urlsplit

from gateway.errors import InvalidParameter

PROXY_SCHEME = "mlflow-artifacts"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_DECODE_ROUNDS = 10


def invalid_path() -> InvalidParameter:
    """MLflow's answer to a path that could leave its folder."""
    return InvalidParameter("Invalid path")


def _decode(path: str) -> str:
    # A path may be percent-encoded more than once (%252e%252e); decode until it is stable.
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(path)
        if decoded == path:
            return path
        path = decoded
    raise invalid_path()


def safe_path(path: str) -> str:
    """Check a client's artifact path as MLflow's server does and return it decoded.

    Rejected (INVALID_PARAMETER_VALUE "Invalid path"): a ``#``, a backslash or
    control character, a ``..`` segment, an absolute POSIX or Windows path
    (``/x``, ``C:\\x``, ``C:x``), a ``file:`` URI, checked after percent-decoding.

    Returns:
        the decoded path with empty and ``.`` segments dropped ("" for the root).

    Raises:
        InvalidParameter: the path could escape the folder it is joined to.
    """
    path = _decode(path)
    if (
        "#" in path
        or "\\" in path
        or _CONTROL_CHARACTERS.search(path)
        or path.lower().startswith("file:")
        or ".." in path.split("/")
        or pathlib.PurePosixPath(path).is_absolute()
        or pathlib.PureWindowsPath(path).is_absolute()
        or (len(path) >= 2 and path[1] == ":")
    ):
        raise invalid_path()
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return "/".join(parts)


def join(*parts: str | None) -> str:
    """Join store-path pieces, skipping empty ones."""
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))


def store_path_of_uri(artifact_uri: str) -> str | None:
    """The store path an ``mlflow-artifacts:`` URI names, or None for any other URI.

    ``mlflow-artifacts:/1/<run>/artifacts`` and
    ``mlflow-artifacts://host:port/1/<run>/artifacts`` both name ``1/<run>/artifacts``.
    """
    parts = urlsplit(artifact_uri)
    if parts.scheme != PROXY_SCHEME:
        return None
    path = posixpath.normpath("/" + parts.path).lstrip("/")
    return "" if path == "." else path
