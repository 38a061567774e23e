"""The ingest sink: lands a batch of run writes (many runs, many requests) in one transaction.

One flush is one transaction, its statements planned once and not again at each flush
(on one PostgreSQL):

1. lock the runs it touches (FOR SHARE, in run_id order; on Citus a shard at a
   time, store/distribution.py), so a racing delete lands either before it (and
   the writes are refused) or after it;
2. insert params write-once, deciding conflicts in the database;
3. upsert tags (last write wins, in arrival order);
4. COPY the new points as chunks, one per series and stretch of steps (binary,
   store/pgcopy.py; the chunks were made before the transaction, store/points.py),
   with chunk ids taken for them first (from a block the writer reserves), by
   which the flush tells its own chunks from stored ones;
5. bump the versions of the runs it writes (store/run_versions.py, in run_id
   order): two flushes of one run, from two worker processes or gateways, meet
   here, and the later one goes on once the other committed;
6. make the summary rows of keys not yet known to have one, in order; then lock the summary row of
   every other (run, key) it carries points of, in order, in one statement that
   also updates the rows of keys whose new points all order after their stored
   latest point (a training loop's case: no other check is needed), and reads
   the stored chunks that the other keys' new steps meet (on Citus both a shard
   at a time, so each goes whole to one worker);
7. for those other keys, leave out the points stored already (a key's chunks of
   this flush are written again without them, so an exact duplicate point is
   stored once) and update their summary rows.

A flush without points bumps the versions last.

A request whose run vanished or whose param conflicts fails alone, with
MLflow's error; the requests beside it commit.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.errors import GatewayError, TransientStoreError
from gateway.mlflow import runs
from gateway.mlflow.runs import param_conflict_error
from gateway.mlflow.wire import RUN_NAME_TAG
from gateway.model import MetricPoint, RunWrite
from gateway.store import pgcopy, run_versions
from gateway.store import points as chunked
from gateway.store.connections import begun, connection
from gateway.store.distribution import RunShards

_UPSERT_SUMMARIES = """
INSERT INTO metric_summaries AS s (run_id, key, step, timestamp, value, min_value, max_value, point_count)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::float8[], $6::float8[],
                     $7::float8[], $8::int8[])
ON CONFLICT (run_id, key) DO UPDATE SET
    step = CASE WHEN (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value) > (s.step, s.timestamp, s.value)
                THEN EXCLUDED.step ELSE s.step END,
    timestamp = CASE WHEN (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value) > (s.step, s.timestamp, s.value)
                THEN EXCLUDED.timestamp ELSE s.timestamp END,
    value = CASE WHEN (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value) > (s.step, s.timestamp, s.value)
                THEN EXCLUDED.value ELSE s.value END,
    min_value = LEAST(s.min_value, EXCLUDED.min_value),
    max_value = GREATEST(s.max_value, EXCLUDED.max_value),
    point_count = s.point_count + EXCLUDED.point_count
"""

# Make the summary rows of a flush's new keys, in order; a key whose row exists (or
# another flush is making: the insert waits for it) is left to _LOCK_AND_APPLY.
_MAKE_SUMMARIES = """
INSERT INTO metric_summaries (run_id, key, step, timestamp, value, min_value, max_value, point_count)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::float8[], $6::float8[], $7::float8[],
                     $8::int8[]) AS w(run_id, key, step, timestamp, value, min_value, max_value, point_count)
ORDER BY run_id, key
ON CONFLICT (run_id, key) DO NOTHING
RETURNING run_id, key
"""

# Lock the summary rows of the flush's other keys in order and update those that need
# no other check, in one statement. A key whose new points all order after its stored
# latest point (a training loop's case) is updated at once. The other keys stay locked,
# unchanged, for the flush to compare their new points with the stored chunks their
# steps meet, which the statement also reads. Rows (kind, run_id, key, ...): kind 1, a
# key, with its latest point, whether its row changed after the statement's snapshot
# was taken (it waited for a flush of the key: the chunks it read may miss that
# flush's) and whether it was updated here; kind 2, a chunk of a key left unchanged
# (not one of this flush's, $16). Every table is also filtered by the runs ($1), so
# that on Citus the statement about one shard's runs goes whole to its worker.
_LOCK_AND_APPLY = """
WITH wanted AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::float8[], $6::float8[], $7::float8[],
                         $8::int8[], $9::int8[], $10::int8[], $11::float8[])
        AS w(run_id, key, step, timestamp, value, min_value, max_value, point_count, first_step, first_timestamp,
             first_value)),
stored AS (
    SELECT s.run_id, s.key, s.step, s.timestamp, s.value, s.point_count
    FROM metric_summaries s JOIN wanted ON s.run_id = wanted.run_id AND s.key = wanted.key
    {runs_of_s}
    ORDER BY s.run_id, s.key FOR UPDATE OF s),
applied AS (
    UPDATE metric_summaries s
    SET step = w.step, timestamp = w.timestamp, value = w.value, min_value = LEAST(s.min_value, w.min_value),
        max_value = GREATEST(s.max_value, w.max_value), point_count = s.point_count + w.point_count
    FROM stored l JOIN wanted w ON w.run_id = l.run_id AND w.key = l.key
    WHERE s.run_id = l.run_id AND s.key = l.key {and_runs_of_s}
      AND (w.first_step, w.first_timestamp, w.first_value) > (l.step, l.timestamp, l.value)
    RETURNING s.run_id, s.key),
seen AS (
    SELECT s.run_id, s.key, s.point_count
    FROM metric_summaries s JOIN wanted ON s.run_id = wanted.run_id AND s.key = wanted.key
    {runs_of_s}),
near AS (
    SELECT DISTINCT ON (c.run_id, c.key, c.chunk_id) c.*
    FROM unnest($12::uuid[], $13::text[], $14::bigint[], $15::bigint[]) AS w(run_id, key, lo, hi)
    JOIN metric_chunks c ON c.run_id = w.run_id AND c.key = w.key AND c.last_step >= w.lo AND c.first_step <= w.hi
    WHERE c.chunk_id <> ALL($16::bigint[]) {and_runs_of_c}
      AND EXISTS (SELECT 1 FROM stored l WHERE l.run_id = w.run_id AND l.key = w.key)
      AND NOT EXISTS (SELECT 1 FROM applied a WHERE a.run_id = w.run_id AND a.key = w.key))
SELECT 1 AS kind, stored.run_id, stored.key, stored.step, stored.timestamp, stored.value,
       seen.point_count IS DISTINCT FROM stored.point_count AS changed, applied.key IS NOT NULL AS applied,
       NULL::bigint AS chunk_id, NULL::text AS model_id, NULL::bigint AS first_step,
       NULL::bigint AS first_timestamp, NULL::integer[] AS step_offsets, NULL::integer[] AS timestamp_offsets,
       NULL::float8[] AS metric_values
FROM stored LEFT JOIN seen ON seen.run_id = stored.run_id AND seen.key = stored.key
     LEFT JOIN applied ON applied.run_id = stored.run_id AND applied.key = stored.key
UNION ALL
SELECT 2, run_id, key, NULL, NULL, NULL, NULL, NULL, chunk_id, model_id, first_step, first_timestamp, step_offsets,
       timestamp_offsets, metric_values
FROM near
"""
# On Citus every table of the statement is also filtered by the flush's runs of one
# shard ($1), so that it goes whole to that shard's worker; on one PostgreSQL the
# filter is left out (it only costs: an array scan per row read).
_LOCK_AND_APPLY_ON_ONE_DATABASE = _LOCK_AND_APPLY.format(runs_of_s="", and_runs_of_s="", and_runs_of_c="")
_LOCK_AND_APPLY_ON_A_SHARD = _LOCK_AND_APPLY.format(
    runs_of_s="WHERE s.run_id = ANY($1::uuid[])",
    and_runs_of_s="AND s.run_id = ANY($1::uuid[])",
    and_runs_of_c="AND c.run_id = ANY($1::uuid[])",
)


# Every statement of a flush joins arrays of (run, key)s to primary keys, so one plan fits
# all flushes. Left to choose, PostgreSQL planned several of them again at each flush's
# bind (their arrays' lengths change the estimates), while the flush held its rows' locks.
# Only on one PostgreSQL: flushes on Citus keep the planner's own choice (not measured there).
# Sent with the flush's BEGIN, in its round trip.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"

# Chunk ids for the chunks flushes write, taken before they are written (a flush tells
# its own chunks from stored ones by them), a block at a time: an id taken and never
# written is only a gap in the sequence.
_RESERVE_CHUNK_IDS = "SELECT array_agg(nextval('metric_chunk_id_seq')) FROM generate_series(1, $1::integer)"
CHUNK_ID_BLOCK = 4096
# Bound on the (run, key)s remembered to have a summary row; past it the memory starts over.
KNOWN_SUMMARIES_LIMIT = 200_000

# The chunks of (run, key)s whose step ranges meet the given ones.
_STORED_CHUNKS = """
SELECT c.run_id, c.key, c.chunk_id, c.model_id, c.dataset_name, c.dataset_digest, c.first_step, c.first_timestamp,
       c.step_offsets, c.timestamp_offsets, c.metric_values
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[]) AS w(run_id, key, lo, hi)
JOIN metric_chunks c ON c.run_id = w.run_id AND c.key = w.key AND c.last_step >= w.lo AND c.first_step <= w.hi
WHERE c.chunk_id <> ALL($5::bigint[])
"""

# Chunks this flush wrote for some keys (written again without their stored points).
_DELETE_OWN_CHUNKS = """
DELETE FROM metric_chunks c USING unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
WHERE c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
"""

# The rows of earlier releases (not yet moved into chunks) in the same ranges.
_STORED_ROWS = """
SELECT m.run_id, m.key, m.model_id, m.step, m.timestamp, m.value
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[]) AS w(run_id, key, lo, hi)
JOIN metric_rows m ON m.run_id = w.run_id AND m.key = w.key AND m.step BETWEEN w.lo AND w.hi
"""

_DELETE_CHUNKS = """
DELETE FROM metric_chunks c USING unnest($1::uuid[], $2::text[], $3::bigint[]) AS w(run_id, key, chunk_id)
WHERE c.run_id = w.run_id AND c.key = w.key AND c.chunk_id = w.chunk_id
RETURNING c.run_id, c.key, c.chunk_id, c.model_id, c.dataset_name, c.dataset_digest, c.first_step, c.first_timestamp,
          c.step_offsets, c.timestamp_offsets, c.metric_values
"""

_DROP_STORED_ROW = """
DELETE FROM metric_rows WHERE run_id = $1 AND key = $2 AND step = $3 AND timestamp = $4 AND value = $5
"""

_INSERT_PARAMS = """
INSERT INTO params (run_id, key, value, experiment_id, start_time)
SELECT w.run_id, w.key, w.value, r.experiment_id, r.start_time
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS w(run_id, key, value) JOIN runs r ON r.run_id = w.run_id
ON CONFLICT (run_id, key) DO NOTHING
RETURNING run_id, key
"""

_EXISTING_PARAMS = """
SELECT p.run_id, p.key, p.value
FROM params p JOIN unnest($1::uuid[], $2::text[]) AS wanted(run_id, key)
  ON p.run_id = wanted.run_id AND p.key = wanted.key
"""

_UPSERT_TAGS = """
INSERT INTO run_tags (run_id, key, value, experiment_id, start_time)
SELECT w.run_id, w.key, w.value, r.experiment_id, r.start_time
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS w(run_id, key, value) JOIN runs r ON r.run_id = w.run_id
ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value
"""

_RENAME_RUNS = """
UPDATE runs SET name = renamed.name
FROM unnest($1::uuid[], $2::text[]) AS renamed(run_id, name)
WHERE runs.run_id = renamed.run_id
"""


class BatchWriter:
    """Writes batches of RunWrite to PostgreSQL; the accumulator's sink.

    Args:
        pool: the asyncpg pool; one connection is held per batch.
    """

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._shards = RunShards()
        self._chunk_ids: list[int] = []
        # (run, key)s whose summary row a committed flush made or found: their flushes skip
        # making it. One removed since (gc) is found missing and the flush done again.
        self._summarized: set[tuple[str, str]] = set()
        self._rows_left = True  # rows of the row-per-point release may be left (metric_rows)

    async def write_batch(self, writes: Sequence[RunWrite]) -> list[GatewayError | None]:
        """Commit ``writes`` in one transaction.

        Returns:
            one entry per write: None if it committed, else the error that refused it.
        Raises:
            TransientStoreError: the database could not be reached; nothing committed,
                the caller may retry the whole batch.
        """
        # The points are arranged into chunks before the transaction, so the summary
        # rows it locks are held for its statements only.
        batches = chunked.batch_by_key(writes)
        async with connection(self._pool) as conn:
            try:
                # A flush of points alone, on one database, checks its runs in the statement that
                # bumps their versions, after its COPY: one statement fewer. If a run is refused
                # there, the flush is rolled back and done again with the runs checked first.
                distributed = await self._shards.distributed(conn)
                check_late = bool(batches) and not any(w.params or w.tags for w in writes) and not distributed
                setup = "" if distributed else _GENERIC_PLANS
                while True:
                    try:
                        async with begun(conn, setup):
                            return await self._write(conn, writes, batches, check_late)
                    except _LockedOutOfOrder:
                        continue
                    except _RunRefused:
                        check_late = False
            except Exception as exc:
                if conn.is_closed() and not isinstance(exc, GatewayError):
                    # The connection died under the flush (asyncpg may report it
                    # as an internal state error); nothing committed, so retry.
                    raise TransientStoreError(f"connection lost: {type(exc).__name__}") from exc
                raise

    async def _write(
        self, conn: asyncpg.Connection, writes: Sequence[RunWrite], batches: dict, check_late: bool
    ) -> list[GatewayError | None]:
        outcome: list[GatewayError | None] = [None] * len(writes)
        groups = await self._shards.groups(conn, (w.run_id for w in writes))
        if check_late:
            await self._insert_metrics(conn, batches, groups, sorted({w.run_id for w in writes}), check_runs=True)
            return outcome
        await self._check_runs(conn, writes, outcome, groups)
        await self._insert_params(conn, writes, outcome)
        live = [w for w, error in zip(writes, outcome) if error is None]
        await self._upsert_tags(conn, live)
        if len(live) < len(writes):
            batches = chunked.batch_by_key(live)
        changed_runs = sorted({w.run_id for w in live if w.entity_count})
        if batches:
            await self._insert_metrics(conn, batches, groups, changed_runs)
        else:
            await run_versions.bump(conn, changed_runs)
        return outcome

    async def _check_runs(self, conn, writes, outcome, groups: list[list[str]]) -> None:
        rows = []
        for group in groups:
            rows += await conn.fetch(
                "SELECT run_id, lifecycle_stage FROM runs WHERE run_id = ANY($1::uuid[]) ORDER BY run_id FOR SHARE",
                group,
            )
        stage_by_run = {row["run_id"].hex: row["lifecycle_stage"] for row in rows}
        for index, write in enumerate(writes):
            error = runs.run_write_refused(write.run_id, stage_by_run.get(write.run_id))
            if error is not None:
                outcome[index] = error

    async def _insert_params(self, conn, writes, outcome) -> None:
        """Insert params write-once; a write with a conflicting param fails as a whole.

        A failed write's other params must not stay behind, so a round with any
        conflict is rolled back to its savepoint and retried without the failed
        writes. Each round removes at least one write, so this ends.
        """
        while True:
            chosen: dict[tuple[str, str], tuple[str, int]] = {}
            conflicts: dict[int, list[tuple[str, str, str]]] = {}
            for index, write in enumerate(writes):
                if outcome[index] is not None:
                    continue
                for param in write.params:
                    earlier = chosen.get((write.run_id, param.key))
                    if earlier is None:
                        chosen[(write.run_id, param.key)] = (param.value, index)
                    elif earlier[0] != param.value:
                        conflicts.setdefault(index, []).append((param.key, earlier[0], param.value))
            if not chosen:
                return
            keys = sorted(chosen)
            await conn.execute("SAVEPOINT params")
            inserted = await conn.fetch(
                _INSERT_PARAMS, [k[0] for k in keys], [k[1] for k in keys], [chosen[k][0] for k in keys]
            )
            inserted_keys = {(row["run_id"].hex, row["key"]) for row in inserted}
            existing = [k for k in keys if k not in inserted_keys]
            if existing:
                rows = await conn.fetch(_EXISTING_PARAMS, [k[0] for k in existing], [k[1] for k in existing])
                for row in rows:
                    key = (row["run_id"].hex, row["key"])
                    new_value, index = chosen[key]
                    if row["value"] != new_value:
                        conflicts.setdefault(index, []).append((row["key"], row["value"], new_value))
            if not conflicts:
                await conn.execute("RELEASE SAVEPOINT params")
                return
            await conn.execute("ROLLBACK TO SAVEPOINT params")
            for index, found in conflicts.items():
                outcome[index] = param_conflict_error(writes[index], found)

    async def _upsert_tags(self, conn, writes: list[RunWrite]) -> None:
        latest: dict[tuple[str, str], str] = {}
        for write in writes:
            for tag in write.tags:
                latest[(write.run_id, tag.key)] = tag.value
        if not latest:
            return
        keys = sorted(latest)
        await conn.execute(_UPSERT_TAGS, [k[0] for k in keys], [k[1] for k in keys], [latest[k] for k in keys])
        renamed = [(k[0], latest[k]) for k in keys if k[1] == RUN_NAME_TAG]
        if renamed:
            await conn.execute(_RENAME_RUNS, [r[0] for r in renamed], [r[1] for r in renamed])

    async def _insert_metrics(
        self, conn, batches: dict[tuple[str, str], chunked.KeyBatch], groups: list[list[str]], changed_runs: list[str],
        *, check_runs: bool = False,
    ) -> None:
        """COPY the batches' chunks, bump the changed runs' versions and apply the summaries.

        With ``check_runs`` (a flush of points alone, on one database), the changed runs are
        also checked, and locked FOR SHARE, in the statement that bumps their versions;
        :class:`_RunRefused` is raised when one may not be written.
        """
        keys = sorted(batches)
        rows = [row for key in keys for row in batches[key].rows]
        chunk_ids = await self._take_chunk_ids(conn, len(rows))
        # The chunks land before the keys are locked, so flushes of the same keys copy
        # side by side and hold the locks for the last statements only.
        await pgcopy.copy_chunks(conn, rows, chunked.CHUNK_COLUMNS, chunk_ids)
        # The runs' versions are locked next, before any summary row: a flush of a run
        # another flush holds waits here, and then locks the summary rows with a snapshot
        # that already sees that flush, so it has no stored chunks to read again.
        if not check_runs:
            await run_versions.bump(conn, changed_runs)
        else:
            stages = await run_versions.check_and_bump(conn, changed_runs)
            if any(runs.run_write_refused(run_id, stages.get(run_id)) for run_id in changed_runs):
                raise _RunRefused
        own: dict[tuple[str, str], list[int]] = {}
        ids = iter(chunk_ids)
        for key in keys:
            own[key] = [next(ids) for _ in batches[key].rows]
        group_of = {run_id: index for index, group in enumerate(groups) for run_id in group}
        known: list[tuple[str, str]] = []
        changed: set = set()
        near: dict[tuple[str, str], list] = {}
        for index in range(len(groups)):
            group_keys = [key for key in keys if group_of[key[0]] == index]
            if group_keys:
                await self._lock_and_apply(conn, group_keys, batches, chunk_ids, known, changed, near)
        if known:
            batches = dict(batches)
            await self._leave_out_stored(conn, known, batches, near, changed, own, chunk_ids)
            summaries = {key: batches[key].summary for key in known if batches[key].summary is not None}
            if summaries:
                await self._upsert_summaries(conn, summaries)

    async def _take_chunk_ids(self, conn, count: int) -> list[int]:
        while len(self._chunk_ids) < count:
            # Another flush may take ids while this one waits for its block: extend the list as it is then.
            block = await conn.fetchval(_RESERVE_CHUNK_IDS, max(count, CHUNK_ID_BLOCK))
            self._chunk_ids.extend(block)
        taken = self._chunk_ids[:count]
        del self._chunk_ids[:count]
        return taken

    async def _lock_and_apply(
        self, conn, keys: list[tuple[str, str]], batches: dict, own_ids: list[int], known: list, changed: set,
        near: dict,
    ) -> None:
        """Make the summary rows of new keys, lock the others' and update those whose new points all follow
        the stored ones; ``keys`` are of one lock group, in order.

        Adds to ``known`` the keys left to compare with their stored points (their rows
        locked, unchanged); to ``changed`` the keys whose rows changed while this flush
        waited for them; and to ``near`` the stored chunks the batches' step ranges
        meet, by key left. A key whose row is neither made nor found (removed between
        the two statements) has the flush done again from the start.
        """
        new = [key for key in keys if key not in self._summarized]
        made_keys: set[tuple[str, str]] = set()
        if new:
            made = await conn.fetch(_MAKE_SUMMARIES, *_summary_columns(new, batches))
            made_keys = {(row["run_id"].hex, row["key"]) for row in made}
            self._remember_summaries(made_keys)
            if len(made_keys) == len(keys):
                return
            keys = [key for key in keys if key not in made_keys]
        firsts = [batches[key].first for key in keys]
        ranges = [(key[0], key[1], row[5], row[6]) for key in keys for row in batches[key].rows]
        rows = await conn.fetch(
            _LOCK_AND_APPLY_ON_A_SHARD if await self._shards.distributed(conn) else _LOCK_AND_APPLY_ON_ONE_DATABASE,
            *_summary_columns(keys, batches),
            [first[0] for first in firsts],
            [first[1] for first in firsts],
            [first[2] for first in firsts],
            *(map(list, zip(*ranges)) if ranges else [[]] * 4),
            own_ids,
        )
        answered = 0
        found: list[tuple[str, str]] = []
        for row in rows:
            kind = row["kind"]
            if kind == 2:
                near.setdefault((row["run_id"].hex, row["key"]), []).append(row)
                continue
            answered += 1
            if not row["applied"]:
                key = (row["run_id"].hex, row["key"])
                found.append(key)
                if row["changed"]:
                    changed.add(key)
        if answered < len(keys):
            self._summarized.difference_update(keys)  # made again when the flush is done again
            raise _LockedOutOfOrder
        self._remember_summaries(keys)
        known.extend(sorted(found))

    def _remember_summaries(self, keys) -> None:
        if len(self._summarized) >= KNOWN_SUMMARIES_LIMIT:
            self._summarized.clear()
        self._summarized.update(keys)

    async def _leave_out_stored(
        self, conn, keys: list[tuple[str, str]], batches: dict, near: dict, changed: set,
        own: dict[tuple[str, str], list[int]], own_ids: list[int],
    ) -> None:
        """Replace the batches of ``keys`` by batches without the points stored already.

        Only chunks whose step range meets a stretch of the new points are read:
        those read under the lock (``near``), or read again for a key that changed
        while the lock was awaited.
        A stored point may come again naming the logged model it belongs to
        (log_model re-sends the run's metrics with model_id): it then moves to the
        model's series and is not counted again. The chunks this flush wrote for a
        key that had stored points are written again without them, and stored
        chunks that lost a point to its model are rewritten.
        """
        stored: dict[tuple[str, str], dict[tuple, tuple]] = {}
        again = [(key[0], key[1], row[5], row[6]) for key in keys if key in changed for row in batches[key].rows]
        found = [row for key in keys if key not in changed for row in near.get(key, ())]
        if again:
            found += await conn.fetch(_STORED_CHUNKS, *map(list, zip(*again)), own_ids)
        for row in found:
            series = stored.setdefault((row["run_id"].hex, row["key"]), {})
            for step, timestamp, value in _points_of(row):
                series[chunked.identity(step, timestamp, value)] = (row["model_id"], row["chunk_id"])
        ranges = list(map(list, zip(*[(key[0], key[1], row[5], row[6]) for key in keys for row in batches[key].rows])))
        if self._rows_left and ranges:
            for row in await conn.fetch(_STORED_ROWS, *ranges):
                series = stored.setdefault((row["run_id"].hex, row["key"]), {})
                series[chunked.identity(row["step"], row["timestamp"], row["value"])] = (row["model_id"], None)
            # Nothing writes rows there any more: once converted, the table stays empty.
            self._rows_left = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM metric_rows)")
        moved_from: dict[tuple[str, str, int], set] = {}
        moved_rows: list[tuple] = []
        doubled: list[tuple[str, str]] = []  # keys whose chunks of this flush held stored points
        for key in keys:
            known = stored.get(key)
            if not known:
                continue
            kept = []
            moved = set()
            for point in batches[key].points:
                identity = chunked.identity(point.step, point.timestamp, point.value)
                found = known.get(identity)
                if found is None:
                    kept.append(point)
                elif point.model_id is not None and found[0] is None:
                    kept.append(point)
                    moved.add(identity)
                    if found[1] is None:
                        moved_rows.append((key[0], key[1], point.step, point.timestamp, point.value))
                    else:
                        moved_from.setdefault((key[0], key[1], found[1]), set()).add(identity)
            if len(kept) < len(batches[key].points):
                doubled.append(key)
            batches[key] = chunked.KeyBatch.of(key[0], key[1], kept, moved)
        if moved_rows:
            await conn.executemany(_DROP_STORED_ROW, moved_rows)
        rewritten = []
        if doubled:
            mine = [(key, chunk_id) for key in doubled for chunk_id in own[key]]
            await conn.execute(
                _DELETE_OWN_CHUNKS, [m[0][0] for m in mine], [m[0][1] for m in mine], [m[1] for m in mine]
            )
            rewritten += [row for key in doubled for row in batches[key].rows]
        chunk_rows = []
        if moved_from:
            chunk_rows = await conn.fetch(
                _DELETE_CHUNKS, [k[0] for k in moved_from], [k[1] for k in moved_from], [k[2] for k in moved_from]
            )
        for row in chunk_rows:
            gone = moved_from[(row["run_id"].hex, row["key"], row["chunk_id"])]
            left = [
                MetricPoint(row["key"], v, t, s, row["model_id"], row["dataset_name"], row["dataset_digest"])
                for s, t, v in _points_of(row)
                if chunked.identity(s, t, v) not in gone
            ]
            if left:
                rewritten.extend(chunked.chunk_rows(row["run_id"].hex, row["key"], left))
        if rewritten:
            await pgcopy.copy_chunks(conn, rewritten, chunked.CHUNK_COLUMNS)

    async def _upsert_summaries(self, conn, summaries: dict[tuple[str, str], chunked.KeySummary]) -> None:
        keys = sorted(summaries)
        await conn.execute(
            _UPSERT_SUMMARIES,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [summaries[k].latest[0] for k in keys],
            [summaries[k].latest[1] for k in keys],
            [summaries[k].latest[2] for k in keys],
            [summaries[k].min_value for k in keys],
            [summaries[k].max_value for k in keys],
            [summaries[k].count for k in keys],
        )


def _summary_columns(keys: list[tuple[str, str]], batches: dict) -> list[list]:
    """The run ids, keys, latest points, extremes and counts of the keys' summaries, as statement arguments."""
    summaries = [batches[key].summary for key in keys]
    return [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [s.latest[0] for s in summaries],
        [s.latest[1] for s in summaries],
        [s.latest[2] for s in summaries],
        [s.min_value for s in summaries],
        [s.max_value for s in summaries],
        [s.count for s in summaries],
    ]


class _RunRefused(Exception):
    """A flush that checked its runs after its COPY found one it may not write; it rolls back and is done
    again with the runs checked first."""


class _LockedOutOfOrder(Exception):
    """A flush found a summary row neither made nor stored; it rolls back and starts again."""


def _points_of(row) -> zip:
    """A stored chunk row's points as (step, timestamp, value)."""
    first_step, first_timestamp = row["first_step"], row["first_timestamp"]
    return zip(
        [first_step + offset for offset in row["step_offsets"]],
        [first_timestamp + offset for offset in row["timestamp_offsets"]],
        row["metric_values"],
    )
