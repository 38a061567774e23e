"""Artifacts in an S3-compatible bucket, through boto3 (the optional ``s3`` extra).

boto3 is synchronous, so every call runs in a worker thread. Uploads go as an
S3 multipart upload, one part buffered at a time, so memory stays flat for any
file size; a failed upload is aborted and leaves no object. The endpoint comes
from ``MLFLOW_S3_ENDPOINT_URL`` (as with MLflow) or boto3's own settings
(``AWS_ENDPOINT_URL``, credentials, region).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from gateway.artifacts.paths import invalid_path
from gateway.errors import GatewayError, NotFound
from gateway.artifacts.store import (
    READ_CHUNK_BYTES,
    ArtifactEntry,
    ArtifactStore,
    Download,
    _rechunk,
    is_directory_error,
    no_such_artifact,
)

# S3 parts must be at least 5 MiB (except the last); 8 MiB keeps a 1 GB file at 125 parts.
PART_BYTES = 8 * 1024 * 1024
_DELETE_BATCH = 1000


_DENIED_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"})


@contextlib.contextmanager
def translate_s3_errors(uri: str):
    """Turn S3 failures while reading ``uri`` into MLflow errors instead of an internal error.

    A missing bucket is RESOURCE_DOES_NOT_EXIST, refused credentials PERMISSION_DENIED,
    anything else (S3 unreachable, throttled) TEMPORARILY_UNAVAILABLE, which clients retry.
    """
    try:
        yield
    except NoCredentialsError:
        raise GatewayError(f"The server has no S3 credentials to read {uri}.", "PERMISSION_DENIED") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise NotFound(f"The bucket of {uri} does not exist.") from None
        if code in _DENIED_CODES:
            raise GatewayError(f"S3 refused to let the server read {uri} ({code}).", "PERMISSION_DENIED") from None
        raise GatewayError(f"S3 failed to serve {uri} ({code}). Retry later.", "TEMPORARILY_UNAVAILABLE",
                           retry_after=2) from None
    except BotoCoreError as error:
        raise GatewayError(
            f"S3 could not be reached to read {uri} ({type(error).__name__}). Retry later.",
            "TEMPORARILY_UNAVAILABLE",
            retry_after=2,
        ) from None


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under ``s3://<bucket>/<prefix>/``.

    Args:
        bucket: the bucket name.
        prefix: the key prefix of the destination ("" for the whole bucket).
        client: a boto3 S3 client; built from the environment when omitted.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client or boto3.client(
            "s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
        )

    @classmethod
    def from_uri(cls, uri: str) -> "S3ArtifactStore":
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ValueError(f"artifacts_destination {uri!r} names no bucket")
        return cls(parts.netloc, parts.path)

    def _key(self, path: str) -> str:
        return "/".join(p for p in (self.prefix, path) if p)

    def _folder_key(self, path: str) -> str:
        key = self._key(path)
        return key + "/" if key else ""

    async def _call(self, method: str, **kwargs):
        return await asyncio.to_thread(getattr(self._client, method), Bucket=self.bucket, **kwargs)

    async def _has_children(self, path: str) -> bool:
        found = await self._call("list_objects_v2", Prefix=self._folder_key(path), MaxKeys=1)
        return found.get("KeyCount", 0) > 0

    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        if not path:
            raise invalid_path()
        if await self._has_children(path):
            raise is_directory_error(path)
        key = self._key(path)
        parts = _rechunk(chunks, PART_BYTES)
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:
            await self._call("put_object", Key=key, Body=first)
            return len(first)
        upload = await self._call("create_multipart_upload", Key=key)
        upload_id = upload["UploadId"]
        completed = []
        written = 0
        try:
            async for number, block in _numbered(first, second, parts):
                answer = await self._call(
                    "upload_part", Key=key, UploadId=upload_id, PartNumber=number, Body=block
                )
                completed.append({"PartNumber": number, "ETag": answer["ETag"]})
                written += len(block)
            await self._call(
                "complete_multipart_upload", Key=key, UploadId=upload_id, MultipartUpload={"Parts": completed}
            )
        except BaseException:
            await asyncio.shield(self._call("abort_multipart_upload", Key=key, UploadId=upload_id))
            raise
        return written

    async def get(self, path: str) -> Download:
        key = self._key(path)
        try:
            head = await self._call("head_object", Key=key)
        except ClientError as error:
            if not _missing(error):
                raise
            if path and await self._has_children(path):
                raise is_directory_error(path) from None
            raise no_such_artifact(path) from None
        body = (await self._call("get_object", Key=key))["Body"]
        return Download(name=path.rsplit("/", 1)[-1], size=head["ContentLength"], chunks=_stream_body(body))

    async def list(self, path: str) -> list[ArtifactEntry]:
        prefix = self._folder_key(path)
        entries: list[ArtifactEntry] = []
        token = None
        while True:
            kwargs = {"Prefix": prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("list_objects_v2", **kwargs)
            for common in page.get("CommonPrefixes", []):
                entries.append(ArtifactEntry(common["Prefix"][len(prefix) :].rstrip("/"), True))
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name:
                    entries.append(ArtifactEntry(name, False, item["Size"]))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        entries.sort(key=lambda e: e.name)
        return entries

    async def delete(self, path: str) -> None:
        keys = [self._key(path)] if path else []
        token = None
        while True:
            kwargs = {"Prefix": self._folder_key(path)}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("list_objects_v2", **kwargs)
            keys.extend(item["Key"] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            await self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


async def _numbered(first: bytes, second: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    yield 1, first
    yield 2, second
    number = 3
    async for block in rest:
        yield number, block
        number += 1


async def _stream_body(body) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(body.read, READ_CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(body.close)
