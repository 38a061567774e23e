"""Headless Chromium (Debian's `chromium` package) driven by Playwright, recording
every call a page makes to the server and every error on the browser console; and the
helpers the browser tests share: a page in the UI's "Model training" mode, the check
that a page stayed clean, screenshots, and waiting for a value."""

from __future__ import annotations

import contextlib
import dataclasses
import http
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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

WAIT_MS = 20_000  # for any one element, answer or value

# Calls a stock `mlflow server` answers 4xx as well: the UI asks who the user is (404
# without authentication) and, before creating or renaming an experiment, whether the
# name is taken (404: it is free).
ALLOWED_FAILURES = frozenset({
    "/ajax-api/2.0/mlflow/users/current",
    "/ajax-api/2.0/mlflow/experiments/get-by-name",
})

# What the UI keeps in localStorage once a user chose "Model training" (not GenAI) in the
# left nav and dismissed the telemetry banner, the assistant's side panel and the model
# registry's promotion dialog.
UI_LOCAL_STORAGE = {
    "mlflow.workflowType_v1": '"machine_learning"',
    "mlflow.telemetry.info.alert.dismissed_v1": "true",
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "_mlflow_model_registry_promo_modal_dismissed_v1": "true",
}

# Chromium's notice when a chart resizes while it is laid out (the run charts do when their
# x-axis changes); not an error of the page.
RESIZE_OBSERVER_NOTICE = "ResizeObserver loop completed with undelivered notifications"


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


@contextlib.contextmanager
def ui_page(browser: Any, server: Any, path: str | None = None) -> Iterator[tuple[Any, Recording]]:
    """A recorded page in Model training mode, opened at ``path`` (after the ``#``) if given;
    without, the caller opens it (after listening for what the page is about to receive)."""
    storage = {
        "cookies": [],
        "origins": [
            {"origin": server.url, "localStorage": [{"name": k, "value": v} for k, v in UI_LOCAL_STORAGE.items()]}
        ],
    }
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    try:
        with recorded_page(browser, server.url, storage_state=storage) as (page, recording):
            page.set_default_timeout(WAIT_MS)
            if path is not None:
                page.goto(f"{server.url}/#{path}")
            yield page, recording
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default


def assert_clean(recording: Recording, *known_errors: str, allowed: frozenset[str] = ALLOWED_FAILURES) -> None:
    """No call failed beyond ``allowed``, and the console showed no error but Chromium's one
    "Failed to load resource" line for each of those allowed failures, its ResizeObserver
    notice and the ``known_errors`` (their beginnings) of MLflow's UI itself."""
    assert recording.failed_calls(allowed) == []
    errors = [
        error for error in recording.console_errors
        if RESIZE_OBSERVER_NOTICE not in error and not error.startswith(known_errors)
    ]
    for call in recording.calls:
        if call.status >= 400:
            reason = http.HTTPStatus(call.status).phrase
            line = f"Failed to load resource: the server responded with a status of {call.status} ({reason})"
            if line in errors:
                errors.remove(line)
    assert errors == []


def screenshot(page: Any, name: str) -> None:
    """The whole page as ``name``.png in $UI_SCREENSHOTS_DIR, if set."""
    folder = os.environ.get("UI_SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def eventually(read: Callable[[], Any], expected: Any, timeout: float = WAIT_MS / 1000) -> Any:
    """``read()`` once it equals ``expected``, or its last value when time is up."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value
