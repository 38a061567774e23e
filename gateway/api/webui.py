"""MLflow's own web UI: the build that ships in the full `mlflow` wheel, served as `mlflow server` serves it.

The index page is at ``/`` and every other file of the build under
``/static-files/``. Files whose names carry a content hash (the bundles under
``static/``) never change under their name, so browsers may keep them for a
year; the rest (the index, the manifest, the icon) are revalidated on each
load, so an upgrade of `mlflow` shows at once.

Without the `ui` extra there is no build: ``/`` then answers a short page that
says how to install it (and `gateway serve` says so once in its log).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from aiohttp import web

from gateway.api.openapi import operation
from gateway.api.routing import Route
from gateway.errors import GatewayError

STATIC_PREFIX = "/static-files"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# main.c2f5f8d4.js, 6114.fcb5e4ec.chunk.js, main.b0f58ef9.css, logo.5c2b4ff3.svg
_HASHED_NAME = re.compile(r"\.[0-9a-f]{8,}\.")

INSTALL_HINT = "pip install 'mlflow-ingestion-gateway[ui]' (from a checkout: pip install -e '.[ui]')"

_NO_UI_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MLflow ingestion gateway</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The web UI is not installed</h1>
<p>This gateway serves MLflow's tracking API; MLflow's web UI comes with the full
<code>mlflow</code> package, which this install leaves out to stay lean.</p>
<p>To get the UI, install the <code>ui</code> extra and restart the gateway:</p>
<pre>{INSTALL_HINT}</pre>
</body></html>
"""


def find_build() -> Path | None:
    """The UI build of the installed `mlflow` package, or None (no `mlflow`, or `mlflow-skinny` only).

    The package is located, not imported: importing `mlflow` costs a second and much memory.
    """
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        build = Path(location) / "server" / "js" / "build"
        if (build / "index.html").is_file():
            return build.resolve()
    return None


def _cache_control(path: Path) -> str:
    return IMMUTABLE if _HASHED_NAME.search(path.name) else REVALIDATE


def ui_routes(build: Path | None) -> list[Route]:
    """The UI build at ``/`` and under ``/static-files/``, or the install hint at ``/``."""
    if build is None:

        @operation(response=None, summary="How to install MLflow's web UI (served without it).", content_type="text/html")
        async def install_hint(request: web.Request) -> web.Response:
            return web.Response(text=_NO_UI_PAGE, content_type="text/html", headers={"Cache-Control": REVALIDATE})

        return [Route("GET", "/", install_hint)]

    index = build / "index.html"

    @operation(response=None, summary="MLflow's web UI.", content_type="text/html")
    async def index_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": REVALIDATE})

    @operation(response=None, summary="A file of MLflow's web UI.", content_type="*/*")
    async def static_file(request: web.Request) -> web.FileResponse:
        relative = request.match_info["path"]
        target = (build / relative).resolve()
        if not target.is_relative_to(build) or not target.is_file():
            raise GatewayError(f"No file {relative!r} in the web UI.", "ENDPOINT_NOT_FOUND")
        return web.FileResponse(target, headers={"Cache-Control": _cache_control(target)})

    return [Route("GET", "/", index_page), Route("GET", STATIC_PREFIX + "/{path:.+}", static_file)]
