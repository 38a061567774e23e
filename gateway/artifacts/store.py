"""The artifact store interface and its local-filesystem backend.

Knows nothing of HTTP: an upload is an async iterator of byte chunks, a
download is either a local file (served with sendfile) or an async iterator of
chunks. Paths are store paths already checked by :func:`gateway.artifacts.paths.safe_path`.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import functools
import os
import secrets
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from gateway.artifacts.paths import invalid_path, store_path_of_uri
from gateway.errors import GatewayError, InvalidParameter, NotFound

# Uploads are written to "<dir>/.gateway-upload-<name>-<random>" and renamed into
# place when complete; listings never show them.
UPLOAD_PREFIX = ".gateway-upload-"
WRITE_BUFFER_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    """One entry of a listing: its name inside the listed folder, kind and size (files only)."""

    name: str
    is_dir: bool
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Download:
    """An artifact to send: a local file, or a stream of chunks of a known size."""

    name: str
    size: int
    local_file: Path | None = None
    chunks: AsyncIterator[bytes] | None = None


def no_such_artifact(path: str) -> NotFound:
    return NotFound(f"No such artifact: '{path}'")


class ArtifactIsDirectory(InvalidParameter):
    """A download named a folder; ``path`` is the path as the store knows it."""

    def __init__(self, path: str):
        super().__init__(f"Artifact path refers to a directory, not a file: '{path}'")
        self.path = path


def is_directory_error(path: str) -> ArtifactIsDirectory:
    return ArtifactIsDirectory(path)


def storage_error(error: OSError) -> GatewayError | None:
    """MLflow's error JSON for a filesystem failure the client can act on; None for any other.

    The message never names the server's own directories.
    """
    if error.errno == errno.ENAMETOOLONG:
        return InvalidParameter("Invalid path: a name in it is longer than the artifact storage allows.")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return GatewayError("The artifact storage is full. Retry later.", "TEMPORARILY_UNAVAILABLE", retry_after=30)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return GatewayError("The server may not use this part of its artifact storage.", "PERMISSION_DENIED")
    return None


def _translate_os_errors(method):
    """Raise :func:`storage_error`'s answer in place of the OSErrors it knows."""

    @functools.wraps(method)
    async def translated(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except OSError as error:
            answer = storage_error(error)
            if answer is None:
                raise
            raise answer from None

    return translated


class ArtifactStore(abc.ABC):
    """Where artifact bytes live. Every path is a checked, ``/``-separated store path."""

    @abc.abstractmethod
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the streamed bytes at ``path``, replacing a file already there.

        The file appears only once every byte has arrived and is durable; if the
        stream fails, nothing is left behind.

        Returns:
            the number of bytes stored.

        Raises:
            InvalidParameter: ``path`` is empty, a folder, or lies under a file.
        """

    @abc.abstractmethod
    async def get(self, path: str) -> Download:
        """Open the file at ``path`` for sending.

        Raises:
            NotFound: nothing is stored at ``path``.
            InvalidParameter: ``path`` is a folder.
        """

    @abc.abstractmethod
    async def list(self, path: str) -> list[ArtifactEntry]:
        """The entries of the folder ``path`` ("" for the root), sorted by name.

        A file or a missing path lists as empty, as MLflow's stores do.
        """

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete the file or the whole folder at ``path``; a missing path is not an error."""

    async def close(self) -> None:
        """Release connections or threads the backend holds."""

    async def delete_run_artifacts(self, artifact_uri: str) -> bool:
        """Delete everything stored under a run's (or logged model's) artifact URI.

        Only ``mlflow-artifacts:`` URIs name this store; others are left alone.

        Returns:
            whether the URI named this store (so something may have been deleted).
        """
        path = store_path_of_uri(artifact_uri)
        if not path:
            # Never delete the whole destination because of an empty URI path.
            return False
        await self.delete(path)
        return True


async def _rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Coalesce small network chunks into blocks of at least ``size`` bytes (the last may be smaller)."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= size:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files under a root directory.

    Args:
        root: the destination directory.
        create: make ``root`` when missing (an artifacts destination); False for a
            folder that is only read (a run's own artifact location), which lists as
            empty while it does not exist.
    """

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        self.root = Path(root).expanduser().resolve()
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    def _resolve(self, path: str) -> Path:
        target = self.root.joinpath(*path.split("/")) if path else self.root
        # A symbolic link inside the destination must not lead out of it either.
        resolved = target.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise invalid_path()
        return target

    @_translate_os_errors
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        if not path:
            raise invalid_path()
        target = self._resolve(path)
        try:
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidParameter(f"Cannot store artifact '{path}': a parent of it is a file.") from None
        if target.is_dir():
            raise is_directory_error(path)
        temp = target.parent / f"{UPLOAD_PREFIX}{target.name[:80]}-{secrets.token_hex(8)}"
        handle = await asyncio.to_thread(open, temp, "wb")
        written = 0
        try:
            async for block in _rechunk(chunks, WRITE_BUFFER_BYTES):
                await asyncio.to_thread(handle.write, block)
                written += len(block)
            await asyncio.to_thread(_sync_and_close, handle)
            try:
                await asyncio.to_thread(os.replace, temp, target)
            except IsADirectoryError:
                raise is_directory_error(path) from None
            await asyncio.to_thread(_sync_directory, target.parent)
        except BaseException:
            # A failed or aborted upload leaves nothing behind, not even a partial file.
            handle.close()
            temp.unlink(missing_ok=True)
            raise
        return written

    @_translate_os_errors
    async def get(self, path: str) -> Download:
        target = self._resolve(path)
        try:
            stat = await asyncio.to_thread(target.stat)
        except (FileNotFoundError, NotADirectoryError):
            raise no_such_artifact(path) from None
        if target.is_dir():
            raise is_directory_error(path)
        return Download(name=target.name, size=stat.st_size, local_file=target)

    @_translate_os_errors
    async def list(self, path: str) -> list[ArtifactEntry]:
        return await asyncio.to_thread(self._list_sync, path)

    def _list_sync(self, path: str) -> list[ArtifactEntry]:
        folder = self._resolve(path)
        if not folder.is_dir():
            return []
        entries = []
        with os.scandir(folder) as found:
            for entry in found:
                if entry.name.startswith(UPLOAD_PREFIX):
                    continue
                if entry.is_dir():
                    entries.append(ArtifactEntry(entry.name, True))
                else:
                    entries.append(ArtifactEntry(entry.name, False, entry.stat().st_size))
        entries.sort(key=lambda e: e.name)
        return entries

    @_translate_os_errors
    async def delete(self, path: str) -> None:
        await asyncio.to_thread(self._delete_sync, path)

    def _delete_sync(self, path: str) -> None:
        target = self._resolve(path)
        if target.is_symlink() or target.is_file():
            target.unlink(missing_ok=True)
        elif target.is_dir():
            shutil.rmtree(target, ignore_errors=False, onerror=_ignore_missing)


def _ignore_missing(function, path, exc_info) -> None:
    # A concurrent delete may remove entries first; anything else is a real failure.
    if not (isinstance(exc_info[1], OSError) and exc_info[1].errno == errno.ENOENT):
        raise exc_info[1]


def _sync_and_close(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _sync_directory(folder: Path) -> None:
    # The rename is durable only once the directory entry is.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def iter_file(path: Path, chunk_size: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
    """Read a local file in chunks without blocking the event loop."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_size):
            yield chunk
    finally:
        handle.close()
