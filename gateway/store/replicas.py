"""Reads on streaming replicas, with read-your-writes.

A :class:`ReadRouter` holds the primary's pool and one pool per streaming
replica (``--read-database-url``). A read routed through it runs on a replica
only once that replica has replayed every transaction that committed on the
primary before the read was asked for, so a caller always sees its own
acknowledged writes, whichever process or gateway took them:

1. it asks the primary for its WAL position with a query sent after the read
   arrived (every write acknowledged before that committed below it);
2. at the same time it asks a replica how far it has replayed, with a query
   also sent after the read arrived, and again after short sleeps while the
   replica is behind, for at most ``wait_s``;
3. once the replica has replayed up to the position, the read runs there;
   otherwise it runs on the primary.

Each of these questions is shared: every read that arrived before a query was
sent takes that query's answer, so a burst of reads costs one round trip to
the primary and one to the replica. A replica that failed to answer (refused,
lost its connection, is not in recovery) is left alone for a while, as is one
that did not catch up in time; their reads go to the primary, never to an
error. Reads are counted in ``gateway_reads`` by who served them and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg

from gateway import telemetry
from gateway.errors import TransientStoreError
from gateway.store.errors import is_transient, translate_transient

log = logging.getLogger(__name__)

T = TypeVar("T")

# The primary's WAL position that covers every transaction it has acknowledged.
# With synchronous_commit on (or local, remote_write, remote_apply) a commit is
# acknowledged once its WAL is flushed, so the write position covers it. With
# synchronous_commit off the commit record may still sit in the WAL buffers;
# the insert position covers it (and may run a few bytes past the last record,
# which at worst sends a read to the primary).
_PRIMARY_POSITION = (
    "SELECT CASE WHEN current_setting('synchronous_commit') = 'off' "
    "THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_lsn() END"
)
# NULL on a server that is not in recovery (a primary, or a promoted replica).
_REPLAYED_POSITION = "SELECT pg_last_wal_replay_lsn()"

# A replica that is down, or was too far behind, is left alone this long; the
# next read after that tries it again.
RETRY_AFTER_S = 1.0
# Pauses between two questions to a replica that is behind: short at first,
# since a streaming replica usually replays a commit within a millisecond or
# two, then doubling (at most one question is in flight per replica, whatever
# the number of reads waiting).
FIRST_PAUSE_S = 0.0002
LONGEST_PAUSE_S = 0.005
# Every (served_by, reason) pair of gateway_reads.
READ_ROUTES = (("replica", "caught_up"), ("primary", "lag"), ("primary", "down"), ("primary", "conflict"))
# How long opening a connection to a replica may take before it counts as down.
CONNECT_TIMEOUT_S = 5.0


class SharedQuery:
    """Answers many callers with one query each time: a call takes the answer of
    the first run of the query that is sent after the call was made.

    One run is in flight at a time; calls that arrive meanwhile wait for the
    next run, which starts when the current one ends.

    Args:
        query: sends the query and returns its answer.
    """

    def __init__(self, query: Callable[[], Awaitable[T]]):
        self._query = query
        self._next: asyncio.Future | None = None
        self._runner: asyncio.Task | None = None

    async def fresh(self) -> T:
        """The answer of a run sent after this call; raises what that run raised."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            # A caller that gave up leaves the answer unread: reading it here keeps
            # asyncio from reporting an exception nobody retrieved.
            self._next.add_done_callback(_mark_retrieved)
        answer = self._next
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="gateway-shared-query")
        # A caller that is cancelled must not cancel the run the others wait for.
        return await asyncio.shield(answer)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                # Taken before the query is sent: whoever joins from now on waits for the next run.
                answer, self._next = self._next, None
                try:
                    result = await self._query()
                except asyncio.CancelledError:
                    answer.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to every caller of this run
                    answer.set_exception(exc)
                else:
                    answer.set_result(result)
        finally:
            self._runner = None

    async def close(self) -> None:
        """Stop the run in flight, if any (its callers are cancelled)."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._next is not None:
            self._next.cancel()
            self._next = None


def _mark_retrieved(answer: asyncio.Future) -> None:
    if not answer.cancelled():
        answer.exception()


def replica_name(url: str) -> str:
    """A replica's URL without its credentials, to name it in logs and metrics."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{host}{parts.path}" if host else url.rpartition("@")[2]


class Replica:
    """One streaming replica: its pool, the shared question of how far it has
    replayed, and until when it is left alone.

    Args:
        name: how logs and metrics name it (its URL without credentials).
        pool: an asyncpg pool on it.
    """

    def __init__(self, name: str, pool: asyncpg.Pool):
        self.name = name
        self.pool = pool
        self.replayed = SharedQuery(self._replayed)
        self.avoid_until = 0.0
        self.avoided_for = ""
        self.up = True
        telemetry.REPLICA_UP.labels(name).set(1)

    async def _replayed(self) -> int | None:
        return await self.pool.fetchval(_REPLAYED_POSITION)

    def avoid(self, reason: str, now: float, why: str) -> None:
        """Leave the replica alone for RETRY_AFTER_S; ``reason`` is ``down`` or ``lag``."""
        self.avoid_until = now + RETRY_AFTER_S
        self.avoided_for = reason
        if reason == "down":
            if self.up:
                log.warning("read replica %s is down (%s); its reads go to the primary", self.name, why)
            self.up = False
            telemetry.REPLICA_UP.labels(self.name).set(0)

    def answered(self) -> None:
        """The replica answered a question: it is up."""
        if not self.up:
            log.info("read replica %s is back", self.name)
        self.up = True
        telemetry.REPLICA_UP.labels(self.name).set(1)


class _Unusable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ReadRouter:
    """Routes reads to a streaming replica that has caught up with the primary, else to the primary.

    With no replicas every read simply runs on the primary.

    Args:
        primary: the pool on the primary (the one writes use).
        replicas: the streaming replicas, tried in turn.
        wait_s: how long a read may wait for a replica to replay what the
            primary had committed when the read arrived, before it runs on the primary.
    """

    def __init__(self, primary: asyncpg.Pool, replicas: Sequence[Replica] = (), *, wait_s: float = 0.25):
        self.primary = primary
        self.replicas = list(replicas)
        self.wait_s = wait_s
        self._primary_position = SharedQuery(self._ask_primary)
        self._turn = 0

    @classmethod
    async def open(
        cls, primary: asyncpg.Pool, replica_urls: Sequence[str], *, size: int, wait_s: float, **pool_options
    ) -> "ReadRouter":
        """Open a pool on each replica and route over them.

        A replica that is down now does not stop this: its pools connect on first
        use, and until it answers its reads go to the primary.

        Args:
            primary: the pool on the primary.
            replica_urls: PostgreSQL URLs of the streaming replicas.
            size: connections per replica pool.
            wait_s: see the class.
            pool_options: further options of ``asyncpg.create_pool`` (reset, command_timeout).
        """
        replicas = []
        for url in replica_urls:
            pool = await asyncpg.create_pool(
                url, min_size=0, max_size=size, timeout=CONNECT_TIMEOUT_S, **pool_options
            )
            replicas.append(Replica(replica_name(url), pool))
        if replicas:
            for served_by, reason in READ_ROUTES:
                telemetry.READS.labels(served_by, reason)
        return cls(primary, replicas, wait_s=wait_s)

    async def close(self) -> None:
        """Close the replicas' pools (the primary's belongs to the caller)."""
        await self._primary_position.close()
        for replica in self.replicas:
            await replica.replayed.close()
            await replica.pool.close()

    async def run(self, read: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Run ``read`` on a replica that has every write committed before this call, else on the primary.

        ``read`` must only read: it may run twice, first on a replica that then
        failed and again on the primary.

        Args:
            read: the work, given the pool to run it on.

        Returns:
            What ``read`` returned.

        Raises:
            TransientStoreError: the primary was unreachable.
            Whatever ``read`` raised, except a replica's connection failures and
            recovery conflicts, which are retried on the primary.
        """
        if not self.replicas:
            return await read(self.primary)
        replica, reason = await self._choose()
        if replica is None:
            telemetry.READS.labels("primary", reason).inc()
            return await read(self.primary)
        try:
            result = await read(replica.pool)
        except Exception as exc:
            reason = self._failed_on(replica, exc)
            if reason is None:
                raise
            telemetry.READS.labels("primary", reason).inc()
            return await read(self.primary)
        telemetry.READS.labels("replica", "caught_up").inc()
        return result

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a read held open (a streamed export), chosen as :meth:`run` chooses.

        A replica that refuses the connection gives way to the primary; a failure
        after the connection was handed out is the caller's.
        """
        replica, reason = (None, "") if not self.replicas else await self._choose()
        conn = None
        if replica is not None:
            try:
                conn = await replica.pool.acquire()
            except Exception as exc:
                reason = self._failed_on(replica, exc)
                if reason is None:
                    raise
                replica = None
        if replica is None:
            if reason:
                telemetry.READS.labels("primary", reason).inc()
            with translate_transient():
                async with self.primary.acquire() as conn:
                    yield conn
            return
        telemetry.READS.labels("replica", "caught_up").inc()
        try:
            yield conn
        finally:
            await replica.pool.release(conn)

    # -- choosing ----------------------------------------------------------------------

    async def _ask_primary(self) -> int:
        return await self.primary.fetchval(_PRIMARY_POSITION)

    async def _choose(self) -> tuple[Replica | None, str]:
        """A replica that has replayed the primary's position as of now, or None and why not."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        ready = [replica for replica in self.replicas if replica.avoid_until <= arrived]
        if not ready:
            return None, min(self.replicas, key=lambda r: r.avoid_until).avoided_for
        replica = ready[self._turn % len(ready)]
        self._turn += 1
        deadline = arrived + self.wait_s
        # Both questions go out at once: the replica's answer only has to reach the
        # primary's, whichever was read first.
        position = loop.create_task(self._primary_position.fresh())
        try:
            replayed = await self._replayed(replica, deadline)
            with translate_transient():
                target = await position
            pause = FIRST_PAUSE_S
            while replayed < target:
                if loop.time() + pause > deadline:
                    replica.avoid("lag", loop.time(), "")
                    return None, "lag"
                await asyncio.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)
                replayed = await self._replayed(replica, deadline)
        except _Unusable as unusable:
            # The primary's answer is not needed now; whatever it raises is not this read's.
            position.add_done_callback(_mark_retrieved_task)
            return None, unusable.reason
        except BaseException:
            position.cancel()
            raise
        telemetry.REPLICA_WAIT_SECONDS.observe(loop.time() - arrived)
        return replica, "caught_up"

    async def _replayed(self, replica: Replica, deadline: float) -> int:
        """The replica's replayed position, asked after now; _Unusable if it cannot say by the deadline."""
        loop = asyncio.get_running_loop()
        try:
            replayed = await asyncio.wait_for(replica.replayed.fresh(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            replica.avoid("lag", loop.time(), "")
            raise _Unusable("lag") from None
        except Exception as exc:  # noqa: BLE001 - any failure to answer makes the replica unusable for now
            replica.avoid("down", loop.time(), f"{type(exc).__name__}: {exc}")
            raise _Unusable("down") from None
        if replayed is None:
            replica.avoid("down", loop.time(), "it is not in recovery: not a streaming replica")
            raise _Unusable("down")
        replica.answered()
        return replayed

    def _failed_on(self, replica: Replica, exc: Exception) -> str | None:
        """Why a read that failed on a replica goes to the primary, or None if the failure is the read's own."""
        cause = exc.__cause__ if isinstance(exc, TransientStoreError) else exc
        if cause is None or not is_transient(cause):
            return None
        sqlstate = getattr(cause, "sqlstate", None) or ""
        if sqlstate.startswith("40"):
            # Canceled by a conflict with recovery (the replica replayed a change the
            # query's snapshot still needed): the replica itself is fine.
            return "conflict"
        replica.avoid("down", asyncio.get_running_loop().time(), f"{type(cause).__name__}: {cause}")
        return "down"


def _mark_retrieved_task(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
