"""The ingest sink: lands a batch of run writes (many runs, many requests) in one transaction.

One flush is one transaction:

1. lock the runs it touches (FOR SHARE, in run_id order), so a racing delete
   lands either before it (and the writes are refused) or after it;
2. insert params write-once, deciding conflicts in the database;
3. upsert tags (last write wins, in arrival order);
4. COPY the metric points (binary); a flush that meets an already stored point
   is done again the slower way, so an exact duplicate point is stored once;
5. upsert one summary row per (run, key) from a batch pre-aggregated here.

A request whose run vanished or whose param conflicts fails alone, with
MLflow's error; the requests beside it commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from gateway.errors import GatewayError, InvalidParameter, NotFound, TransientStoreError
from gateway.model import RunWrite
from gateway.store.errors import translate_transient

_METRIC_COLUMNS = ("run_id", "key", "step", "timestamp", "value", "model_id", "dataset_name", "dataset_digest")
RUN_NAME_TAG = "mlflow.runName"

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


def _after(value: float, other: float) -> bool:
    # PostgreSQL orders NaN above every number and equal to itself; the summary
    # upsert compares in SQL, so the in-flush pre-aggregation orders the same way.
    if value != value:
        return other == other
    return other == other and value > other


def summarise(records: Iterable[tuple]) -> dict[tuple[str, str], list]:
    """Pre-aggregate metric records to one summary per (run, key).

    A record is a row of the metrics table: (run_id, key, step, timestamp,
    value, model_id, dataset_name, dataset_digest). A summary is
    [step, timestamp, value, min_value, max_value, count]: the latest point
    (greatest step, then timestamp, then value), min and max over the non-NaN
    values (None while there is none) and the number of records.
    """
    summaries: dict[tuple[str, str], list] = {}
    get = summaries.get
    for run_id, key, step, timestamp, value, _model, _dataset, _digest in records:
        summary = get((run_id, key))
        if summary is None:
            finite = None if value != value else value
            summaries[(run_id, key)] = [step, timestamp, value, finite, finite, 1]
            continue
        latest_step = summary[0]
        if step > latest_step or (
            step == latest_step
            and (timestamp > summary[1] or (timestamp == summary[1] and _after(value, summary[2])))
        ):
            summary[0] = step
            summary[1] = timestamp
            summary[2] = value
        if value == value:
            low = summary[3]
            if low is None:
                summary[3] = summary[4] = value
            elif value < low:
                summary[3] = value
            elif value > summary[4]:
                summary[4] = value
        summary[5] += 1
    return summaries


def param_conflict_error(write: RunWrite, conflicts: list[tuple[str, str, str]]) -> InvalidParameter:
    """MLflow's message for changing logged params; conflicts are (key, old, new)."""
    if not write.is_batch:
        key, old, new = conflicts[0]
        return InvalidParameter(
            "Changing param values is not allowed. Param with key='{}' was already logged with value='{}' "
            "for run ID='{}'. Attempted logging new value '{}'.".format(key, old, write.run_id, new)
        )
    listed = ", ".join(
        "{{'key': {!r}, 'old_value': {!r}, 'new_value': {!r}}}".format(key, old, new) for key, old, new in conflicts
    )
    return InvalidParameter(
        "Changing param values is not allowed. Params were already logged='[{}]' for run ID='{}'.".format(
            listed, write.run_id
        )
    )


class BatchWriter:
    """Writes batches of RunWrite to PostgreSQL; the accumulator's sink.

    Args:
        pool: the asyncpg pool; one connection is held per batch.
    """

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def write_batch(self, writes: Sequence[RunWrite]) -> list[GatewayError | None]:
        """Commit ``writes`` in one transaction.

        Returns:
            one entry per write: None if it committed, else the error that refused it.
        Raises:
            TransientStoreError: the database could not be reached; nothing committed,
                the caller may retry the whole batch.
        """
        with translate_transient():
            async with self._pool.acquire() as conn:
                try:
                    try:
                        async with conn.transaction():
                            return await self._write(conn, writes, skip_stored=False)
                    except asyncpg.exceptions.UniqueViolationError:
                        # Some points were stored before (a client retried a write
                        # whose answer it never saw), or came twice in this flush.
                        # Rare, so the flush is done again the slower way that
                        # stores each point once.
                        async with conn.transaction():
                            return await self._write(conn, writes, skip_stored=True)
                except Exception as exc:
                    if conn.is_closed() and not isinstance(exc, GatewayError):
                        # The connection died under the flush (asyncpg may report it
                        # as an internal state error); nothing committed, so retry.
                        raise TransientStoreError(f"connection lost: {type(exc).__name__}") from exc
                    raise

    async def _write(
        self, conn: asyncpg.Connection, writes: Sequence[RunWrite], *, skip_stored: bool
    ) -> list[GatewayError | None]:
        outcome: list[GatewayError | None] = [None] * len(writes)
        await self._check_runs(conn, writes, outcome)
        await self._insert_params(conn, writes, outcome)
        live = [w for w, error in zip(writes, outcome) if error is None]
        await self._upsert_tags(conn, live)
        await self._insert_metrics(conn, live, skip_stored)
        return outcome

    async def _check_runs(self, conn, writes, outcome) -> None:
        run_ids = sorted({w.run_id for w in writes})
        rows = await conn.fetch(
            "SELECT run_id, lifecycle_stage FROM runs WHERE run_id = ANY($1::uuid[]) ORDER BY run_id FOR SHARE",
            run_ids,
        )
        stage_by_run = {row["run_id"].hex: row["lifecycle_stage"] for row in rows}
        for index, write in enumerate(writes):
            stage = stage_by_run.get(write.run_id)
            if stage is None:
                outcome[index] = NotFound(f"Run with id={write.run_id} not found")
            elif stage != "active":
                outcome[index] = InvalidParameter(
                    f"The run {write.run_id} must be in the 'active' state. Current state is {stage}."
                )

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
            savepoint = conn.transaction()
            await savepoint.start()
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
                await savepoint.commit()
                return
            await savepoint.rollback()
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

    async def _insert_metrics(self, conn, writes: list[RunWrite], skip_stored: bool) -> None:
        records: list[tuple] = []
        for write in writes:
            run_id = write.run_id
            records.extend(
                [
                    (run_id, p.key, p.step, p.timestamp, p.value, p.model_id, p.dataset_name, p.dataset_digest)
                    for p in write.metrics
                ]
            )
        if not records:
            return
        if skip_stored:
            records = await self._insert_metrics_skipping_stored(conn, records)
        else:
            await conn.copy_records_to_table("metrics", records=records, columns=_METRIC_COLUMNS)
        await self._upsert_summaries(conn, records)

    async def _insert_metrics_skipping_stored(self, conn, records: list[tuple]) -> list[tuple]:
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_metrics (LIKE metrics INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table("incoming_metrics", records=records, columns=_METRIC_COLUMNS)
        # A point stored before may come again naming the logged model it belongs to
        # (log_model re-sends the run's metrics with model_id): the stored point then
        # takes the model, and is not counted again.
        rows = await conn.fetch(
            """INSERT INTO metrics
               SELECT DISTINCT ON (run_id, key, step, timestamp, value) * FROM incoming_metrics
               ORDER BY run_id, key, step, timestamp, value, model_id NULLS LAST
               ON CONFLICT (run_id, key, step, timestamp, value) DO UPDATE
                  SET model_id = EXCLUDED.model_id, dataset_name = EXCLUDED.dataset_name,
                      dataset_digest = EXCLUDED.dataset_digest
                WHERE metrics.model_id IS NULL AND EXCLUDED.model_id IS NOT NULL
               RETURNING run_id, key, step, timestamp, value, xmax = 0 AS inserted"""
        )
        await conn.execute("TRUNCATE incoming_metrics")
        return [(row[0].hex, row[1], row[2], row[3], row[4], None, None, None) for row in rows if row[5]]

    async def _upsert_summaries(self, conn, records: list[tuple]) -> None:
        summaries = summarise(records)
        if not summaries:
            return
        # Sorted, so two flushes touching the same rows lock them in one order.
        keys = sorted(summaries)
        columns = list(zip(*(summaries[k] for k in keys)))
        await conn.execute(_UPSERT_SUMMARIES, [k[0] for k in keys], [k[1] for k in keys], *map(list, columns))
