"""The store behind an artifact URI: this server's own destination or a location of the run's own.

A run or logged model normally stores its files under ``mlflow-artifacts:/...``,
which names a path in this server's artifacts destination. An experiment created
with its own ``artifact_location`` gives its runs URIs such as ``/data/exp``,
``file:///data/exp`` or ``s3://bucket/exp``; the client writes there directly and
the server reads there when asked to list or send the files, as ``mlflow server``
does. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gateway.artifacts.paths import PROXY_SCHEME, store_path_of_uri
from gateway.artifacts.store import ArtifactStore, LocalArtifactStore
from gateway.errors import GatewayError, InvalidParameter
from gateway.mlflow.wire import PROXIED_ARTIFACTS_ROUTE

# An http(s) artifact root names this server's proxy when its path holds this anchor.
_LOCAL_SCHEMES = ("", "file")


@dataclass(frozen=True, slots=True)
class ArtifactLocation:
    """Where an artifact URI's files are: a store and the store path of the URI's root."""

    store: ArtifactStore
    root: str


def supported_schemes() -> list[str]:
    """URI schemes this server can read artifacts from (``s3`` only when boto3 is installed)."""
    schemes = ["", "file", PROXY_SCHEME, "http", "https"]
    if _has_boto3():
        schemes.append("s3")
    return schemes


def _has_boto3() -> bool:
    return importlib.util.find_spec("boto3") is not None


class UnsupportedScheme(GatewayError):
    """No artifact store of this server takes the URI's scheme (installing a package will not help)."""


def unsupported_scheme(artifact_uri: str) -> UnsupportedScheme:
    """MLflow's message for a URI no artifact repository takes; NOT_IMPLEMENTED rather than its 500."""
    return UnsupportedScheme(
        f"Could not find a registered artifact repository for: {artifact_uri}. "
        f"Currently registered schemes are: {supported_schemes()}",
        "NOT_IMPLEMENTED",
    )


def _proxied_root(artifact_uri: str) -> str | None:
    """The destination path of an ``mlflow-artifacts:`` URI or an http(s) URL of the proxy, else None."""
    root = store_path_of_uri(artifact_uri)
    if root is not None:
        return root
    parts = urlsplit(artifact_uri)
    if parts.scheme in ("http", "https") and PROXIED_ARTIFACTS_ROUTE in parts.path:
        return parts.path.split(PROXIED_ARTIFACTS_ROUTE, 1)[1].strip("/")
    return None


@contextlib.asynccontextmanager
async def open_location(artifact_uri: str, destination: ArtifactStore) -> AsyncIterator[ArtifactLocation]:
    """The store holding ``artifact_uri``'s files, open for the duration of the block.

    Args:
        artifact_uri: a run's artifact_uri or a logged model's artifact_location.
        destination: this server's artifacts destination, for proxied URIs.

    Yields:
        the location; paths below it are joined to ``location.root``.

    Raises:
        GatewayError: NOT_IMPLEMENTED for a scheme this server cannot read (MLflow's
            message), PERMISSION_DENIED or TEMPORARILY_UNAVAILABLE when the backing
            storage refuses or cannot be reached.
    """
    root = _proxied_root(artifact_uri)
    if root is not None:
        yield ArtifactLocation(destination, root)
        return
    if _is_local(artifact_uri):
        try:
            yield ArtifactLocation(store_at(artifact_uri, create=False), "")
        except PermissionError:
            raise GatewayError(
                f"The server may not read the artifacts at {artifact_uri}.", "PERMISSION_DENIED"
            ) from None
        return
    _check_remote(artifact_uri)
    from gateway.artifacts.s3 import translate_s3_errors

    with translate_s3_errors(artifact_uri):
        try:
            # Building a boto3 client reads files and the environment: keep it off the event loop.
            store = await asyncio.to_thread(store_at, artifact_uri, create=False)
        except ValueError as error:
            raise InvalidParameter(str(error)) from None
        try:
            yield ArtifactLocation(store, "")
        finally:
            await store.close()


def _is_local(uri: str) -> bool:
    scheme = urlsplit(uri).scheme
    # A one-letter scheme is a Windows drive ("C:/data"), a local path.
    return scheme.lower() in _LOCAL_SCHEMES or len(scheme) == 1


def store_at(uri: str, *, create: bool) -> ArtifactStore:
    """The store whose root is ``uri``: a local directory (a path or a ``file:`` URI) or S3 (``s3://bucket/prefix``).

    The S3 backend is imported only when asked for, so boto3 is needed only then
    (``pip install 'mlflow-ingestion-gateway[s3]'``).

    Args:
        uri: the root.
        create: make a local root that does not exist yet (the server's own destination).

    Raises:
        UnsupportedScheme: a scheme no store of this server takes (MLflow's message).
        GatewayError: NOT_IMPLEMENTED, an S3 URI on a server without boto3.
    """
    if _is_local(uri):
        parts = urlsplit(uri)
        return LocalArtifactStore(unquote(parts.path) if parts.scheme.lower() == "file" else uri, create=create)
    _check_remote(uri)
    from gateway.artifacts.s3 import S3ArtifactStore

    return S3ArtifactStore.from_uri(uri)


def _check_remote(uri: str) -> None:
    """Refuse a URI that is not local unless it is S3 and boto3 is installed."""
    if urlsplit(uri).scheme.lower() != "s3":
        raise unsupported_scheme(uri)
    if not _has_boto3():
        raise GatewayError(
            f"Reading the artifacts at {uri} needs boto3 on the server: pip install 'mlflow-ingestion-gateway[s3]'.",
            "NOT_IMPLEMENTED",
        )


def open_store(destination: str) -> ArtifactStore:
    """The store for this server's artifacts destination (``--artifacts-destination``), made when missing."""
    return store_at(destination, create=True)
