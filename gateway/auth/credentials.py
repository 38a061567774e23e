"""The credentials file: users, their scope and their hashed secret.

The file is JSON, written atomically (a temporary file in the same directory,
fsynced, then renamed over the old one) with mode 0600::

    {"version": 1,
     "users": [{"name": "trainer", "scope": "write", "kind": "token",
                "token_id": "3f9c2a1b7d4e", "secret_hash": "$argon2id$v=19$...",
                "created": 1700000000}]}

Secrets are stored only as argon2id hashes. A user of kind ``token`` holds a
generated bearer token of the form ``mlgw_<token_id>_<secret>``; ``token_id``
finds the user without trying every hash. A user of kind ``password`` signs in
with HTTP basic auth. A token user may also send its token as the password of
HTTP basic auth (for clients that only speak basic).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Literal

import msgspec
from argon2 import PasswordHasher

Scope = Literal["read", "write", "admin"]
Kind = Literal["token", "password"]

# Each scope includes the ones before it: admin implies write implies read.
SCOPES: tuple[str, ...] = ("read", "write", "admin")
TOKEN_PREFIX = "mlgw_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_TOKEN = re.compile(r"^mlgw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

# argon2id with the library's defaults (RFC 9106 low-memory profile).
hasher = PasswordHasher()


class CredentialsError(Exception):
    """The credentials file is missing, unreadable or malformed, or a user command was misused."""


class User(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    scope: Scope
    kind: Kind
    secret_hash: str
    token_id: str | None = None
    created: int = 0


class _File(msgspec.Struct, kw_only=True):
    version: int = 1
    users: list[User] = []


def scope_allows(granted: str, needed: str) -> bool:
    """Whether a user holding ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def parse_token(token: str) -> str | None:
    """The token id of a well-formed gateway token, else None."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


class CredentialsFile:
    """Reads and rewrites one credentials file.

    Args:
        path: where the file lives; its directory must exist.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> list[User]:
        """The users of the file.

        Raises:
            CredentialsError: the file does not exist or is not a valid credentials file.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise CredentialsError(f"credentials file {self.path} does not exist") from None
        except OSError as exc:
            raise CredentialsError(f"cannot read credentials file {self.path}: {exc.strerror}") from None
        try:
            users = msgspec.json.decode(raw, type=_File).users
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CredentialsError(f"credentials file {self.path} is malformed: {exc}") from None
        names = [user.name for user in users]
        if len(set(names)) != len(names):
            raise CredentialsError(f"credentials file {self.path} names a user twice")
        return users

    def load_or_empty(self) -> list[User]:
        return self.load() if self.path.exists() else []

    def save(self, users: list[User]) -> None:
        """Write the file atomically with mode 0600 (readers see the old or the new file, never half)."""
        payload = json.dumps(
            {"version": 1, "users": [msgspec.to_builtins(user) for user in users]}, indent=2, sort_keys=True
        ).encode()
        directory = self.path.parent
        descriptor, temporary = tempfile.mkstemp(prefix=".credentials-", dir=directory)
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with_suppressed_unlink(temporary)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def add_token_user(self, name: str, scope: str) -> str:
        """Add a user holding a new bearer token; return the token (it is stored only hashed)."""
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        self._add(User(name=name, scope=scope, kind="token", token_id=token_id, secret_hash=hasher.hash(token),
                       created=int(time.time())))
        return token

    def add_password_user(self, name: str, scope: str, password: str) -> None:
        """Add a user who signs in with HTTP basic auth."""
        if len(password) < 8:
            raise CredentialsError("the password must have at least 8 characters")
        self._add(User(name=name, scope=scope, kind="password", secret_hash=hasher.hash(password),
                       created=int(time.time())))

    def remove_user(self, name: str) -> None:
        users = self.load()
        kept = [user for user in users if user.name != name]
        if len(kept) == len(users):
            raise CredentialsError(f"no user named {name!r} in {self.path}")
        self.save(kept)

    def _add(self, user: User) -> None:
        if not _NAME.match(user.name):
            raise CredentialsError(
                "a user name has 1-128 characters: letters, digits, '_', '.', '@' and '-', "
                "starting with a letter or digit"
            )
        if user.scope not in SCOPES:
            raise CredentialsError(f"scope must be one of {', '.join(SCOPES)}")
        users = self.load_or_empty()
        if any(existing.name == user.name for existing in users):
            raise CredentialsError(f"user {user.name!r} already exists; remove it first to replace its secret")
        self.save([*users, user])


def with_suppressed_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
