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
from gateway.api.decoding import ok, optional_str, read, read_query, required_str, run_id_of
from gateway.api.limits import body_chunks
from gateway.api.openapi import operation
from gateway.api.routing import Route, under
from gateway.api.schemas import Empty
from gateway.api.state import ARTIFACTS, LOGGED_MODELS, REGISTRY, STORE
from gateway.artifacts import ArtifactEntry, Download, join, safe_path
from gateway.artifacts.locations import open_location
from gateway.artifacts.paths import invalid_path
from gateway.artifacts.store import ArtifactIsDirectory, is_directory_error
from gateway.errors import GatewayError, InvalidParameter
from gateway.mlflow import registry
from gateway.mlflow.wire import ARTIFACT_PREFIXES, TRACKING_PREFIXES, UI_PREFIX

_ARTIFACTS_MARKER = "/mlflow-artifacts/artifacts/"
STREAM_CHUNK_BYTES = 1024 * 1024

# MLflow's server sends files of these extensions (and these names) as text/plain,
# so that its UI previews them as text.
TEXT_EXTENSIONS = frozenset(
    {
        "txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop", "hocon", "toml",
        "yaml", "yml", "xml", "json", "js", "py", "py3", "csv", "tsv", "md", "rst", "ipynb",
        "MLmodel", "MLproject",
    }
)
UI_UPLOAD_MAX_BYTES = 10 * 1024 * 1024

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


def content_type_of(name: str) -> str:
    """The Content-Type MLflow's server sends a file with: text/plain for text files, else by extension."""
    stem, dot, extension = name.rpartition(".")
    if (extension if dot and stem else name) in TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


async def _send(request: web.Request, download: Download) -> web.StreamResponse:
    content_type = content_type_of(download.name)
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
    return await _send_from(request, model.info.artifact_uri, relative)


async def _send_from(request: web.Request, artifact_uri: str, relative: str) -> web.StreamResponse:
    """Send one file below an artifact root (this server's destination or the root's own store)."""
    async with open_location(artifact_uri, request.app[ARTIFACTS]) as location:
        try:
            download = await location.store.get(join(location.root, relative))
        except ArtifactIsDirectory:
            # Named as the client asked for it, not by its place in the store.
            raise is_directory_error(relative) from None
        return await _send(request, download)


def _required_path(value: str | None) -> str:
    if not value:
        raise GatewayError("Request must include the \"path\" query parameter.", "BAD_REQUEST")
    return safe_path(value)


@operation(model_schemas.GetRunArtifact, None, summary="Download one file of a run (the web UI's preview).",
           content_type="*/*")
async def get_run_artifact(request: web.Request) -> web.StreamResponse:
    """GET /get-artifact?run_uuid=&path=: a run's file, with the content type MLflow's UI previews by."""
    message = await read(request, model_schemas.GetRunArtifact)
    relative = _required_path(message.path)
    info = await request.app[STORE].get_run_info(run_id_of(message))
    return await _send_from(request, info.artifact_uri, relative)


@operation(
    model_schemas.GetModelVersionArtifact, None, summary="Download one file of a model version (the web UI's preview).",
    content_type="*/*",
)
async def get_model_version_artifact(request: web.Request) -> web.StreamResponse:
    """GET /model-versions/get-artifact?name=&version=&path=: a file of the version's source."""
    message = await read(request, model_schemas.GetModelVersionArtifact)
    relative = _required_path(message.path)
    name = required_str(message.name, "name")
    version = registry.model_version(required_str(message.version, "version"))
    registry.model_name(name)
    artifact_uri = await request.app[REGISTRY].get_download_uri(name, version)
    return await _send_from(request, artifact_uri, relative)


@operation(model_schemas.UploadRunArtifact, Empty, summary="Upload a small file to a run (the web UI's upload).")
async def upload_run_artifact(request: web.Request) -> web.Response:
    """POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=&path=: the body (at most 10 MB) becomes the file."""
    message = read_query(request, model_schemas.UploadRunArtifact)
    if not message.run_uuid:
        raise InvalidParameter("Request must specify run_uuid.")
    if not message.path:
        raise InvalidParameter("Request must specify path.")
    relative = safe_path(message.path)
    too_large = InvalidParameter("Artifact size is too large. Max size is 10MB.")
    if (request.content_length or 0) > UI_UPLOAD_MAX_BYTES:
        raise too_large
    data = await request.read()
    if not data:
        raise InvalidParameter("Request must specify data.")
    if len(data) > UI_UPLOAD_MAX_BYTES:
        raise too_large
    info = await request.app[STORE].get_run_info(message.run_uuid)

    async def body():
        yield data

    async with open_location(info.artifact_uri, request.app[ARTIFACTS]) as location:
        await location.store.put(join(location.root, relative), body())
    return ok()


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


_MULTIPART_ACTIONS = ("create", "complete", "abort")

ROUTES = [
    *under(ARTIFACT_PREFIXES, [
        Route("GET", "/artifacts", list_proxied_artifacts),
        Route("GET", "/artifacts/{artifact_path:.*}", download_artifact),
        Route("PUT", "/artifacts/{artifact_path:.*}", upload_artifact),
        Route("DELETE", "/artifacts/{artifact_path:.*}", delete_artifact),
        *(Route("POST", f"/mpu/{action}/{{artifact_path:.*}}", multipart_unsupported) for action in _MULTIPART_ACTIONS),
        Route("GET", "/presigned/{artifact_path:.*}", presigned_unsupported),
    ]),
    *under(TRACKING_PREFIXES, [
        Route("GET", "/artifacts/list", list_run_artifacts),
        Route("GET", "/logged-models/{model_id}/artifacts/directories", list_logged_model_artifacts),
        Route("GET", "/logged-models/{model_id}/artifacts/files", download_logged_model_artifact),
    ]),
    # The web UI's own paths, where `mlflow server` serves them.
    Route("GET", "/get-artifact", get_run_artifact),
    Route("GET", "/model-versions/get-artifact", get_model_version_artifact),
    Route("POST", UI_PREFIX + "/upload-artifact", upload_run_artifact),
]
