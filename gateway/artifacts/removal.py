"""Removing every file under a run's or logged model's artifact URI, for ``gateway gc``.

The URI is resolved as artifacts/list resolves it (:func:`open_location`):
``mlflow-artifacts:`` URIs name a folder of this server's destination; a local
path, ``file://`` or ``s3://`` URI is the run's own location, written by the
client directly. Knows nothing of HTTP or SQL.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from urllib.parse import urlsplit

from gateway.artifacts.locations import UnsupportedScheme, open_location
from gateway.artifacts.store import ArtifactStore, LocalArtifactStore
from gateway.errors import GatewayError

# MLflow puts a run's files in "<run folder>/artifacts" and a logged model's in
# "<models>/<model id>/artifacts"; the folder above is left empty once they are gone.
_ARTIFACTS_FOLDER = "artifacts"


class NotRemovable(GatewayError):
    """The URI names no folder gc may remove: a whole store, or a path relative to an unknown directory."""

    def __init__(self, artifact_uri: str, reason: str):
        super().__init__(f"Not removing the artifacts at {artifact_uri!r}: {reason}.", "INVALID_PARAMETER_VALUE")


def is_permanent(error: BaseException) -> bool:
    """Whether removing the same URI again can never succeed (so there is no point retrying it)."""
    return isinstance(error, (UnsupportedScheme, NotRemovable))


async def remove_artifacts(artifact_uri: str, destination: ArtifactStore) -> None:
    """Delete everything stored under ``artifact_uri``; a location with no files is not an error.

    Args:
        artifact_uri: a removed run's artifact_uri or logged model's artifact_location.
        destination: this server's artifacts destination (for ``mlflow-artifacts:`` URIs).

    Raises:
        UnsupportedScheme: no store of this server takes the URI's scheme.
        NotRemovable: the URI is empty, names a whole store (the destination, a
            bucket, the filesystem root) or is a relative path.
        GatewayError: the storage refused or could not be reached (PERMISSION_DENIED,
            TEMPORARILY_UNAVAILABLE, NOT_IMPLEMENTED when boto3 is missing).
        OSError: a local file could not be removed.
    """
    if not artifact_uri.strip():
        raise NotRemovable(artifact_uri, "the URI is empty")
    parts = urlsplit(artifact_uri)
    if parts.scheme == "" and not os.path.isabs(artifact_uri):
        # The server resolved it against its own working directory, which gc cannot know.
        raise NotRemovable(artifact_uri, "a relative path")
    if parts.scheme.lower() == "s3" and not parts.path.strip("/"):
        raise NotRemovable(artifact_uri, "it names a whole bucket")
    async with open_location(artifact_uri, destination) as location:
        store = location.store
        if location.root == "" and store is destination:
            raise NotRemovable(artifact_uri, "it names the whole artifacts destination")
        if isinstance(store, LocalArtifactStore):
            folder = store.root.joinpath(*location.root.split("/")) if location.root else store.root
            if folder.parent == folder:
                raise NotRemovable(artifact_uri, "it names the filesystem root")
            await store.delete(location.root)
            if folder.name == _ARTIFACTS_FOLDER and (store is not destination or folder.parent != store.root):
                await asyncio.to_thread(_remove_if_empty, folder.parent)
            return
        await store.delete(location.root)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError as error:
        # Still holding other files (or already gone): leave it.
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise
