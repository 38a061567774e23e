"""Checks presented credentials against the credentials file, with a cache for the hot path.

argon2 is deliberately slow (tens of milliseconds and 64 MiB per check), so a
successful verification is remembered for ``positive_ttl`` seconds, keyed by a
keyed hash of the presented credential under a key that lives only in this process's
memory (keyed BLAKE2b): the cache never holds a secret, and its keys are useless elsewhere.
Failures are remembered only briefly (``negative_ttl``) in a separate, smaller
map, so a client repeating a wrong secret cannot make every request hash, and a
flood of random secrets cannot evict the good entries. Hashing runs in worker
threads, at most ``max_concurrent_hashes`` at once, so the event loop keeps
serving while a check runs.

The file is re-read when it changes (checked at most once per second); both
caches are dropped then, so a removed user is locked out within about a second.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.auth.credentials import CredentialsError, CredentialsFile, User, hasher, parse_token

log = logging.getLogger(__name__)

@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user is unknown, so that an unknown name costs the same time as a
    wrong secret. Made on first need (in a worker thread), not at import: one argon2 hash holds
    64 MiB for a moment, which a server without authentication, or a CLI command, should not pay."""
    return hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    scope: str


class _Bounded:
    """A map with a size bound (oldest entries go first) and an expiry per entry."""

    def __init__(self, max_entries: int, ttl: float):
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()

    def get(self, key: bytes, now: float) -> tuple[bool, Principal | None]:
        found = self._entries.get(key)
        if found is None:
            return False, None
        expires, principal = found
        if now >= expires:
            del self._entries[key]
            return False, None
        return True, principal

    def put(self, key: bytes, principal: Principal | None, now: float) -> None:
        self._entries[key] = (now + self.ttl, principal)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Verifier:
    """Answers "who is this?" for a bearer token or a basic-auth user and password.

    Args:
        path: the credentials file.
        positive_ttl: seconds a successful verification is reused.
        negative_ttl: seconds a failed one is reused.
        max_entries: bound on remembered successes (failures: a quarter of it).
        max_concurrent_hashes: argon2 checks allowed to run at once.
        clock: the monotonic clock the expiries are measured on.

    Raises:
        CredentialsError: the file cannot be read at start.
    """

    def __init__(
        self,
        path: str,
        *,
        positive_ttl: float = 600.0,
        negative_ttl: float = 10.0,
        max_entries: int = 8192,
        max_concurrent_hashes: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._clock = clock
        self._file = CredentialsFile(path)
        self._key = secrets.token_bytes(32)
        self._positive = _Bounded(max_entries, positive_ttl)
        self._negative = _Bounded(max(4, max_entries // 4), negative_ttl)
        self._hash_slots = asyncio.Semaphore(max_concurrent_hashes)
        self._in_flight: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._users: dict[str, User] = {}
        self._by_token: dict[str, User] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._load()
        self.hashes_run = 0

    @property
    def user_count(self) -> int:
        return len(self._users)

    def _load(self) -> None:
        stat = os.stat(self._file.path)
        users = self._file.load()
        self._users = {user.name: user for user in users}
        self._by_token = {user.token_id: user for user in users if user.token_id}
        self._stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        self._positive.clear()
        self._negative.clear()

    def _maybe_reload(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + 1.0
        try:
            stat = os.stat(self._file.path)
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._stamp:
                self._load()
                log.info("credentials file reloaded", extra={"users": len(self._users)})
        except (OSError, CredentialsError) as exc:
            # Keep serving with the users last read; the file is written atomically,
            # so this is an operator's mistake to report, not a half-written file.
            log.error("credentials file not reloaded: %s", exc)

    async def bearer(self, token: str) -> Principal | None:
        """The user holding this bearer token, or None."""
        now = self._clock()
        self._maybe_reload(now)
        key = self._cache_key(b"bearer\0" + token.encode())
        hit, principal = self._cached(key, now)
        if hit:
            return principal
        token_id = parse_token(token)
        return await self._verify(key, self._by_token.get(token_id) if token_id else None, token)

    async def basic(self, name: str, password: str) -> Principal | None:
        """The user with this name and password (or token), or None."""
        now = self._clock()
        self._maybe_reload(now)
        key = self._cache_key(b"basic\0" + name.encode() + b"\0" + password.encode())
        hit, principal = self._cached(key, now)
        if hit:
            return principal
        return await self._verify(key, self._users.get(name), password)

    def _cache_key(self, credential: bytes) -> bytes:
        # Keyed BLAKE2b is a MAC: without the process's key the digest says nothing of the secret.
        return hashlib.blake2b(credential, key=self._key, digest_size=32).digest()

    def _cached(self, key: bytes, now: float) -> tuple[bool, Principal | None]:
        hit, principal = self._positive.get(key, now)
        if hit:
            return hit, principal
        return self._negative.get(key, now)

    async def _verify(self, key: bytes, user: User | None, secret: str) -> Principal | None:
        # Many connections of one client arrive with the same credential at once: hash it once.
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._in_flight[key] = pending
        try:
            principal = await self._hash_and_cache(key, user, secret)
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved here: the waiters, if any, get it too
            raise
        else:
            pending.set_result(principal)
            return principal
        finally:
            del self._in_flight[key]

    async def _hash_and_cache(self, key: bytes, user: User | None, secret: str) -> Principal | None:
        async with self._hash_slots:
            matched = await asyncio.get_running_loop().run_in_executor(
                None, _check_hash, user.secret_hash if user else None, secret
            )
        self.hashes_run += 1
        # The file may have been reloaded while the hash ran: admit only a user it still holds.
        current = matched and user is not None and self._users.get(user.name) is user
        principal = Principal(user.name, user.scope) if current else None
        if principal is not None:
            self._positive.put(key, principal, self._clock())
        else:
            self._negative.put(key, None, self._clock())
        return principal


def _check_hash(secret_hash: str | None, secret: str) -> bool:
    if secret_hash is None:
        _check_hash(_dummy_hash(), secret)
        return False
    # argon2 compares the derived hash in constant time.
    try:
        return hasher.verify(secret_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
