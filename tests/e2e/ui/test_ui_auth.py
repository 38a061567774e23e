"""The web UI behind `--auth-file`: the browser signs in with HTTP basic, as with
`mlflow server --app-name basic-auth`, and every page and call needs it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from gateway.auth import CredentialsFile
from tests.e2e.ui.browser import recorded_page
from tests.e2e.ui.conftest import new_database
from tests.server import GatewayProcess

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def secured(postgres, tmp_path_factory):
    credentials = tmp_path_factory.mktemp("ui-auth") / "credentials.json"
    users = CredentialsFile(credentials)
    users.add_password_user("reader", "read", PASSWORD)
    users.add_password_user("writer", "write", PASSWORD)
    process = GatewayProcess(new_database(postgres), "--auth-file", str(credentials))
    yield process
    process.stop()


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


def test_pages_and_calls_need_credentials(secured):
    for path in ("/", "/static-files/favicon.ico", "/graphql"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(secured.url + path, timeout=10)
        assert refused.value.code == 401
        assert "Basic" in refused.value.headers["WWW-Authenticate"]


def test_a_reader_browses_with_basic_auth(secured, browser):
    create = urllib.request.Request(
        secured.url + "/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": "behind-auth"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": basic("writer")},
    )
    urllib.request.urlopen(create, timeout=10)

    credentials = {"username": "reader", "password": PASSWORD}
    with recorded_page(browser, secured.url, http_credentials=credentials) as (page, recording):
        page.goto(secured.url + "/#/experiments")
        page.get_by_text("behind-auth").first.wait_for(timeout=30_000)
        graphql_or_search = [c for c in recording.calls if "experiments/search" in c.path]
    assert graphql_or_search and all(c.status == 200 for c in graphql_or_search)
    assert [c for c in recording.calls if c.status in (401, 403)] == []

    # Without credentials, headless Chromium has no one to ask and gives up on the 401.
    from playwright.sync_api import Error as BrowserError

    with recorded_page(browser, secured.url) as (page, recording):
        with pytest.raises(BrowserError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(secured.url + "/#/experiments")
    assert [(c.path, c.status) for c in recording.calls] == [("/", 401)]
