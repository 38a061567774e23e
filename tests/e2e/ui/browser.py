"""Headless Chromium (Debian's `chromium` package) driven by Playwright, recording
every call a page makes to the server and every error on the browser console."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Iterator
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Chromium's own background traffic finds no network here; these keep it quiet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclasses.dataclass
class Call:
    method: str
    path: str  # path and query, without the server's address
    status: int
    operation: str | None  # GraphQL operationName
    body: str


@dataclasses.dataclass
class Recording:
    """What one page asked of the server, and what the browser console said."""

    base_url: str
    calls: list[Call] = dataclasses.field(default_factory=list)
    console_errors: list[str] = dataclasses.field(default_factory=list)

    def failed_calls(self, allowed: frozenset[str] = frozenset()) -> list[Call]:
        """Calls answered 4xx/5xx, except paths in ``allowed`` (where `mlflow server` answers the same)."""
        return [c for c in self.calls if c.status >= 400 and c.path.split("?", 1)[0] not in allowed]


def _record_response(recording: Recording, response: Any) -> None:
    request = response.request
    if not request.url.startswith(recording.base_url) or "/static-files/" in request.url:
        return
    body = request.post_data or ""
    operation = None
    if request.url.endswith("/graphql") and body:
        with contextlib.suppress(ValueError, AttributeError):
            operation = json.loads(body).get("operationName")
    recording.calls.append(
        Call(request.method, request.url[len(recording.base_url):], response.status, operation, body)
    )


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def recorded_page(browser: Any, base_url: str, **context_options: Any) -> Iterator[tuple[Any, Recording]]:
    """A new page (in a context of its own) whose calls and console errors are recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True, **context_options)
    page = context.new_page()
    recording = Recording(base_url)
    page.on("response", lambda response: _record_response(recording, response))
    page.on("console", lambda message: recording.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: recording.console_errors.append(str(error)))
    try:
        yield page, recording
    finally:
        context.close()
