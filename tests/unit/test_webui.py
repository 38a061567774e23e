"""Serving the web UI's files, on a real HTTP server on 127.0.0.1 (no database needed)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.api.middleware import mlflow_errors
from gateway.api.routing import add_routes
from gateway.api.webui import INSTALL_HINT, find_build, ui_routes


@pytest.fixture
def build(tmp_path) -> Path:
    (tmp_path / "static" / "js").mkdir(parents=True)
    (tmp_path / "index.html").write_text("<html>index</html>")
    (tmp_path / "static" / "js" / "main.c2f5f8d4.js").write_text("bundle();")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path.parent / "secret.txt").write_text("outside")
    return tmp_path


async def serve(build: Path | None):
    app = web.Application(middlewares=[mlflow_errors])
    add_routes(app, ui_routes(build))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def get(server: TestServer, path: str) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.port}{path}") as response:
            return response.status, dict(response.headers), await response.text()


async def test_index_and_files_with_their_cache_lifetimes(build):
    server = await serve(build)
    try:
        status, headers, text = await get(server, "/")
        assert (status, text, headers["Cache-Control"]) == (200, "<html>index</html>", "no-cache")
        assert headers["Content-Type"].startswith("text/html")
        status, headers, text = await get(server, "/static-files/static/js/main.c2f5f8d4.js")
        assert (status, text) == (200, "bundle();")
        assert headers["Content-Type"] == "application/javascript"
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        status, headers, _ = await get(server, "/static-files/manifest.json")
        assert (status, headers["Content-Type"], headers["Cache-Control"]) == (200, "application/json", "no-cache")
    finally:
        await server.close()


@pytest.mark.parametrize("path", ["/static-files/../secret.txt", "/static-files/%2e%2e/secret.txt",
                                  "/static-files/static", "/static-files/nothing.js"])
async def test_nothing_outside_the_build_and_no_folders(build, path):
    server = await serve(build)
    try:
        status, _, text = await get(server, path)
        assert status == 404
        assert "outside" not in text
    finally:
        await server.close()


async def test_without_the_ui_the_index_says_how_to_install_it():
    server = await serve(None)
    try:
        status, headers, text = await get(server, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert INSTALL_HINT in text
        status, _, _ = await get(server, "/static-files/static/js/main.js")
        assert status == 404
    finally:
        await server.close()


def test_the_installed_mlflow_wheel_has_a_build():
    build = find_build()
    assert build is not None and (build / "index.html").is_file()
    assert build.parts[-3:] == ("server", "js", "build")
