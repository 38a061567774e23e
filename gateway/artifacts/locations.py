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

# An http(s) artifact root names this server's proxy when its path holds this anchor.
_PROXY_HTTP_ANCHOR = "/api/2.0/mlflow-artifacts/artifacts/"
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
    if parts.scheme in ("http", "https") and _PROXY_HTTP_ANCHOR in parts.path:
        return parts.path.split(_PROXY_HTTP_ANCHOR, 1)[1].strip("/")
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
    parts = urlsplit(artifact_uri)
    scheme = parts.scheme.lower()
    # A one-letter scheme is a Windows drive ("C:/data"), a local path.
    if scheme in _LOCAL_SCHEMES or len(scheme) == 1:
        directory = unquote(parts.path) if scheme == "file" else artifact_uri
        try:
            yield ArtifactLocation(LocalArtifactStore(directory, create=False), "")
        except PermissionError:
            raise GatewayError(
                f"The server may not read the artifacts at {artifact_uri}.", "PERMISSION_DENIED"
            ) from None
        return
    if scheme == "s3":
        if not _has_boto3():
            raise GatewayError(
                f"Reading the artifacts at {artifact_uri} needs boto3 on the server: "
                "pip install 'mlflow-ingestion-gateway[s3]'.",
                "NOT_IMPLEMENTED",
            )
        from gateway.artifacts.s3 import S3ArtifactStore, translate_s3_errors

        with translate_s3_errors(artifact_uri):
            try:
                # Building a boto3 client reads files and the environment: keep it off the event loop.
                store = await asyncio.to_thread(S3ArtifactStore.from_uri, artifact_uri)
            except ValueError as error:
                raise InvalidParameter(str(error)) from None
            try:
                yield ArtifactLocation(store, "")
            finally:
                await store.close()
        return
    raise unsupported_scheme(artifact_uri)
