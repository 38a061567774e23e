"""The artifact store: where the files a run logs (plots, checkpoints, model folders) live.

``open_store(destination)`` gives a local-directory store or, for
``s3://bucket/prefix``, an S3 one. Handlers stream uploads into ``put`` and
downloads out of ``get``. ``removal.remove_artifacts(artifact_uri, destination)``
removes what a run or logged model stored, wherever it lives, for ``gateway gc``.
Knows nothing of HTTP or SQL.
"""

from gateway.artifacts.paths import join, safe_path, store_path_of_uri
from gateway.artifacts.store import (
    ArtifactEntry,
    ArtifactStore,
    Download,
    LocalArtifactStore,
    iter_file,
)
from gateway.artifacts.locations import open_store

__all__ = [
    "ArtifactEntry",
    "ArtifactStore",
    "Download",
    "LocalArtifactStore",
    "iter_file",
    "join",
    "open_store",
    "safe_path",
    "store_path_of_uri",
]
