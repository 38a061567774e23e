"""The artifact proxy (``/api/2.0/mlflow-artifacts/...``), artifacts/list and a logged model's files.

Uploads stream from the request body into the artifact store and downloads
stream back out (sendfile for local files), so memory stays flat whatever the
file size. Paths are checked on the raw request path, before any URL
normalisation, with MLflow's rule: a path that could leave its folder is
INVALID_PARAMETER_VALUE "Invalid path".
"""

from __future__ import annotations

import mimetypes

from aiohttp import web

from gateway.api import model_schemas
from gateway.api.limits import body_chunks
from gateway.api.openapi import operation
from gateway.api.routes import ok, optional_str, read, run_id_of
from gateway.api.schemas import Empty
from gateway.api.state import ARTIFACTS, LOGGED_MODELS, STORE
from gateway.artifacts import ArtifactEntry, Download, join, safe_path
from gateway.artifacts.locations import open_location
from gateway.artifacts.paths import invalid_path
from gateway.artifacts.store import ArtifactIsDirectory, is_directory_error
from gateway.errors import GatewayError

PROXY_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
TRACKING_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
_ARTIFACTS_MARKER = "/mlflow-artifacts/artifacts/"
STREAM_CHUNK_BYTES = 1024 * 1024

MULTIPART_UPLOAD_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"
MULTIPART_DOWNLOAD_UNSUPPORTED = "Multipart download is not supported for the current artifact repository"


def _path_after(request: web.Request, marker: str) -> str:
    """The artifact path of the request as the client sent it (still percent-encoded).

    aiohttp resolves ``a/../b`` before routing; reading the raw path keeps such
    segments so that they are rejected rather than silently resolved.
    """
    raw = request.raw_path.split("?", 1)[0]
    index = raw.find(marker)
    if index < 0:
        return request.match_info.get("artifact_path", "")
    return raw[index + len(marker) :]


def _artifact_path(request: web.Request, marker: str = _ARTIFACTS_MARKER) -> str:
    return safe_path(_path_after(request, marker))


def _file_infos(entries: list[ArtifactEntry], parent: str | None) -> list[model_schemas.FileInfo]:
    return [
        model_schemas.FileInfo(
            path=join(parent, entry.name) if parent else entry.name,
            is_dir=entry.is_dir,
            file_size=None if entry.is_dir else entry.size,
        )
        for entry in entries
    ]


@operation(
    response=Empty,
    summary="Upload an artifact: the body is the file's bytes, streamed (no size bound).",
    streamed_body=True,
)
async def upload_artifact(request: web.Request) -> web.Response:
    """PUT: stream the body into the store; the file appears only once complete."""
    path = _artifact_path(request)
    if not path:
        raise invalid_path()
    await request.app[ARTIFACTS].put(path, body_chunks(request))
    return ok()


@operation(response=None, summary="Download an artifact, as it was stored.", content_type="*/*")
async def download_artifact(request: web.Request) -> web.StreamResponse:
    """GET: send the file as an attachment (sendfile for local files, chunks otherwise)."""
    path = _artifact_path(request)
    return await _send(request, await request.app[ARTIFACTS].get(path))


async def _send(request: web.Request, download: Download) -> web.StreamResponse:
    content_type = mimetypes.guess_type(download.name)[0] or "application/octet-stream"
    headers = {
        "Content-Disposition": f'attachment; filename="{_header_safe(download.name)}"',
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
    }
    if download.local_file is not None:
        return web.FileResponse(download.local_file, chunk_size=STREAM_CHUNK_BYTES, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = download.size
    await response.prepare(request)
    async for chunk in download.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def _header_safe(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "replace").decode()


@operation(response=Empty, summary="Delete an artifact file or folder.")
async def delete_artifact(request: web.Request) -> web.Response:
    """DELETE: remove a file or a whole folder; a missing path is not an error (as MLflow)."""
    path = _artifact_path(request)
    if not path:
        raise invalid_path()
    await request.app[ARTIFACTS].delete(path)
    return ok()


@operation(
    model_schemas.ListProxiedArtifacts,
    model_schemas.ListProxiedArtifactsResponse,
    summary="List a folder of the artifact proxy.",
)
async def list_proxied_artifacts(request: web.Request) -> web.Response:
    """GET /mlflow-artifacts/artifacts?path=: the folder's entries by name."""
    message = await read(request, model_schemas.ListProxiedArtifacts)
    raw = optional_str(message.path, "path")
    path = safe_path(raw) if raw else ""
    entries = await request.app[ARTIFACTS].list(path)
    return ok(model_schemas.ListProxiedArtifactsResponse(files=_file_infos(entries, None)))


@operation(
    model_schemas.ListArtifacts,
    model_schemas.ListArtifactsResponse,
    summary="List a run's artifacts under a folder.",
)
async def list_run_artifacts(request: web.Request) -> web.Response:
    """GET /mlflow/artifacts/list: a run's artifacts under ``path``, paths relative to the run's root.

    Runs under ``mlflow-artifacts:`` list from this server's destination; runs of an
    experiment with its own artifact location (a directory, ``file://`` or ``s3://``)
    list from there, as ``mlflow server`` does.
    """
    return ok(await answer_list_run_artifacts(request.app, await read(request, model_schemas.ListArtifacts)))


async def answer_list_run_artifacts(
    app: web.Application, message: model_schemas.ListArtifacts
) -> model_schemas.ListArtifactsResponse:
    """artifacts/list, also asked through GraphQL."""
    run_id = run_id_of(message)
    raw = optional_str(message.path, "path")
    relative = safe_path(raw) if raw else ""
    info = await app[STORE].get_run_info(run_id)
    entries = await _list_under(app, info.artifact_uri, relative)
    return model_schemas.ListArtifactsResponse(root_uri=info.artifact_uri, files=_file_infos(entries, relative or None))


async def _list_under(app: web.Application, artifact_uri: str, relative: str) -> list[ArtifactEntry]:
    async with open_location(artifact_uri, app[ARTIFACTS]) as location:
        return await location.store.list(join(location.root, relative))


@operation(
    model_schemas.ListLoggedModelArtifacts,
    model_schemas.ListArtifactsResponse,
    summary="List a logged model's files under a folder.",
)
async def list_logged_model_artifacts(request: web.Request) -> web.Response:
    """GET /mlflow/logged-models/<id>/artifacts/directories: a logged model's files under a folder."""
    message = await read(request, model_schemas.ListLoggedModelArtifacts)
    raw = optional_str(message.artifact_directory_path, "artifact_directory_path")
    relative = safe_path(raw) if raw else ""
    model = await request.app[LOGGED_MODELS].get(request.match_info["model_id"])
    entries = await _list_under(request.app, model.info.artifact_uri, relative)
    return ok(
        model_schemas.ListArtifactsResponse(
            root_uri=model.info.artifact_uri, files=_file_infos(entries, relative or None)
        )
    )


@operation(
    model_schemas.GetLoggedModelArtifact,
    None,
    summary="Download one file of a logged model, as it was stored.",
    content_type="*/*",
)
async def download_logged_model_artifact(request: web.Request) -> web.StreamResponse:
    """GET /mlflow/logged-models/<id>/artifacts/files?artifact_file_path=: one file of a logged model."""
    message = await read(request, model_schemas.GetLoggedModelArtifact)
    raw = message.artifact_file_path
    if not raw:
        raise GatewayError('Request must include the "artifact_file_path" query parameter.', "BAD_REQUEST")
    relative = safe_path(raw)
    model = await request.app[LOGGED_MODELS].get(request.match_info["model_id"])
    async with open_location(model.info.artifact_uri, request.app[ARTIFACTS]) as location:
        try:
            download = await location.store.get(join(location.root, relative))
        except ArtifactIsDirectory:
            # Named as the client asked for it, not by its place in the store.
            raise is_directory_error(relative) from None
        return await _send(request, download)


@operation(
    response=None,
    summary="Multipart upload: declined with 501 NOT_IMPLEMENTED; the client then sends one streamed PUT.",
    succeeds=False,
)
async def multipart_unsupported(request: web.Request) -> web.Response:
    """create/complete/abort multipart: the client falls back to one streamed PUT on this answer."""
    action = request.path.split("/mlflow-artifacts/mpu/", 1)[1].split("/", 1)[0]
    _artifact_path(request, f"/mlflow-artifacts/mpu/{action}/")
    raise GatewayError(MULTIPART_UPLOAD_UNSUPPORTED, "NOT_IMPLEMENTED")


@operation(
    response=None,
    summary="Presigned download: declined with 501 NOT_IMPLEMENTED; the client then downloads through the proxy.",
    succeeds=False,
)
async def presigned_unsupported(request: web.Request) -> web.Response:
    raise GatewayError(MULTIPART_DOWNLOAD_UNSUPPORTED, "NOT_IMPLEMENTED")


def add_artifact_routes(app: web.Application) -> None:
    """Register the artifact proxy, artifacts/list and the logged-model file routes under /api and /ajax-api."""
    for prefix in PROXY_PREFIXES:
        app.router.add_get(prefix + "/artifacts", list_proxied_artifacts)
        app.router.add_get(prefix + "/artifacts/{artifact_path:.*}", download_artifact)
        app.router.add_put(prefix + "/artifacts/{artifact_path:.*}", upload_artifact)
        app.router.add_delete(prefix + "/artifacts/{artifact_path:.*}", delete_artifact)
        for action in ("create", "complete", "abort"):
            app.router.add_post(f"{prefix}/mpu/{action}/{{artifact_path:.*}}", multipart_unsupported)
        app.router.add_get(prefix + "/presigned/{artifact_path:.*}", presigned_unsupported)
    for prefix in TRACKING_PREFIXES:
        app.router.add_get(prefix + "/artifacts/list", list_run_artifacts)
        models = prefix + "/logged-models/{model_id}/artifacts"
        app.router.add_get(models + "/directories", list_logged_model_artifacts)
        app.router.add_get(models + "/files", download_logged_model_artifact)
