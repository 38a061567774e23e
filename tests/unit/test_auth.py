"""The credentials file and the verifier's cache, without a server."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from gateway.auth import CredentialsError, CredentialsFile, Principal, Verifier, scope_allows
from gateway.auth.credentials import parse_token


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def file(tmp_path):
    return CredentialsFile(tmp_path / "credentials.json")


def test_file_is_private_and_holds_no_secret(file):
    token = file.add_token_user("trainer", "write")
    file.add_password_user("analyst", "read", "s3cret-password")
    assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
    text = file.path.read_text()
    assert token not in text and token.split("_")[2] not in text
    assert "s3cret-password" not in text
    assert [(u.name, u.scope, u.kind) for u in file.load()] == [("trainer", "write", "token"), ("analyst", "read", "password")]
    assert parse_token(token) == file.load()[0].token_id
    assert [name for name in os.listdir(file.path.parent)] == ["credentials.json"]


def test_user_commands_reject_misuse(file):
    file.add_token_user("trainer", "write")
    with pytest.raises(CredentialsError, match="already exists"):
        file.add_token_user("trainer", "read")
    with pytest.raises(CredentialsError, match="scope must be one of read, write, admin"):
        file.add_token_user("other", "root")
    with pytest.raises(CredentialsError, match="user name"):
        file.add_token_user("bad name!", "read")
    with pytest.raises(CredentialsError, match="at least 8"):
        file.add_password_user("short", "read", "abc")
    with pytest.raises(CredentialsError, match="no user named 'ghost'"):
        file.remove_user("ghost")


def test_malformed_file(file):
    file.path.write_text('{"users": [{"name": "x"}]}')
    with pytest.raises(CredentialsError, match="malformed"):
        file.load()


def test_scopes_nest():
    assert scope_allows("admin", "write") and scope_allows("write", "read") and scope_allows("read", "read")
    assert not scope_allows("read", "write") and not scope_allows("write", "admin")


async def test_a_verified_secret_is_hashed_once(file):
    token = file.add_token_user("trainer", "write")
    verifier = Verifier(str(file.path))
    for _ in range(5):
        assert await verifier.bearer(token) == Principal("trainer", "write")
    assert verifier.hashes_run == 1
    assert await verifier.basic("trainer", token) == Principal("trainer", "write")
    assert verifier.hashes_run == 2


async def test_failures_are_remembered_only_briefly(file):
    file.add_password_user("analyst", "read", "right-password")
    clock = Clock()
    verifier = Verifier(str(file.path), negative_ttl=10.0, clock=clock)
    assert await verifier.basic("analyst", "wrong-password") is None
    assert await verifier.basic("analyst", "wrong-password") is None
    assert verifier.hashes_run == 1
    clock.now += 11
    assert await verifier.basic("analyst", "wrong-password") is None
    assert verifier.hashes_run == 2
    assert await verifier.basic("analyst", "right-password") == Principal("analyst", "read")


async def test_unknown_users_cost_a_hash_too(file):
    file.add_password_user("analyst", "read", "right-password")
    verifier = Verifier(str(file.path))
    assert await verifier.basic("nobody", "right-password") is None
    assert await verifier.bearer("mlgw_000000000000_" + "A" * 43) is None
    assert verifier.hashes_run == 2


async def test_the_cache_is_bounded(file):
    file.add_password_user("analyst", "read", "right-password")
    verifier = Verifier(str(file.path), max_entries=16)
    for attempt in range(6):
        assert await verifier.basic("analyst", f"wrong-{attempt}") is None
    assert len(verifier._negative) == 4
    assert await verifier.basic("analyst", "right-password") is not None


async def test_a_removed_user_is_locked_out_after_reload(file):
    token = file.add_token_user("trainer", "write")
    file.add_token_user("keeper", "read")
    clock = Clock()
    verifier = Verifier(str(file.path), clock=clock)
    assert await verifier.bearer(token) == Principal("trainer", "write")
    file.remove_user("trainer")
    clock.now += 2  # the file is looked at again at most once a second
    assert await verifier.bearer(token) is None
    assert verifier.user_count == 1


async def test_concurrent_checks_of_one_credential_hash_once(file):
    token = file.add_token_user("trainer", "write")
    verifier = Verifier(str(file.path))
    results = await asyncio.gather(*(verifier.bearer(token) for _ in range(16)))
    assert results == [Principal("trainer", "write")] * 16
    assert verifier.hashes_run == 1
    forged = token[:-1] + ("B" if token.endswith("A") else "A")
    wrong = await asyncio.gather(*(verifier.bearer(forged) for _ in range(8)))
    assert wrong == [None] * 8
    assert verifier.hashes_run == 2
