"""Permanent removal of deleted runs and experiments (``gateway gc``), in short batches.

A run deleted (soft, ``lifecycle_stage = 'deleted'``) at or before the cutoff is
removed with every row that names it. An experiment deleted before the cutoff is
removed with all of its runs and its tags, as ``mlflow gc`` does.

Each batch is its own short transaction and locks its runs ``FOR UPDATE`` in
run_id order, the order in which a flush locks them ``FOR SHARE``. So a flush
racing a batch either commits first (and its rows are removed with the run) or
waits and then finds the run gone (its writes fail with RESOURCE_DOES_NOT_EXIST);
nothing is half-stored, and the two cannot deadlock. An experiment's row is
locked before its runs, the order experiment delete and restore take them.

Every batch reports the runs it removed (id, experiment, artifact URI), so
removing their artifacts can follow each committed batch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
import msgspec

from gateway.errors import InvalidParameter, NotFound
from gateway.store.errors import translate_transient

# Every table whose rows belong to one run (keyed by run_id), removed with the run.
# A new run-scoped table must be added here; tests/e2e/test_gc.py fails until it is.
RUN_SCOPED_TABLES = ("metrics", "metric_summaries", "params", "run_tags", "run_dataset_inputs", "run_model_inputs")
# Every table whose rows belong to one experiment, removed with the experiment.
EXPERIMENT_SCOPED_TABLES = ("experiment_tags",)

MAX_BATCH_SIZE = 10_000
DEFAULT_BATCH_SIZE = 500
# A deadlock with a statement outside the gateway's lock order aborts a batch;
# nothing of it committed, so it is simply run again.
_BATCH_ATTEMPTS = 5

_DELETED_RUNS = """
SELECT run_id, experiment_id, artifact_uri FROM runs
WHERE lifecycle_stage = 'deleted' AND deleted_time <= $1
  AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
ORDER BY run_id LIMIT $3
FOR UPDATE
"""

_DELETED_EXPERIMENTS = """
SELECT experiment_id FROM experiments
WHERE lifecycle_stage = 'deleted' AND last_update_time < $1
  AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
ORDER BY experiment_id
"""

_LOCK_DELETED_EXPERIMENT = """
SELECT experiment_id FROM experiments
WHERE experiment_id = $1 AND lifecycle_stage = 'deleted' AND last_update_time < $2
FOR UPDATE
"""

_RUNS_OF_EXPERIMENT = """
SELECT run_id, experiment_id, artifact_uri FROM runs
WHERE experiment_id = $1
ORDER BY run_id LIMIT $2
FOR UPDATE
"""

_COUNT_RUNS = """
SELECT count(*) FROM runs
WHERE (lifecycle_stage = 'deleted' AND deleted_time <= $1
       AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[])))
   OR experiment_id = ANY($3::bigint[])
"""


class RemovedRun(msgspec.Struct, frozen=True):
    """A run whose rows were removed: what an artifact store needs to remove its files."""

    run_id: str
    experiment_id: str
    artifact_uri: str


class GcBatch(msgspec.Struct, frozen=True):
    """What one committed batch removed.

    Attributes:
        runs: the runs removed.
        rows: rows removed per table (``RUN_SCOPED_TABLES``, ``runs``, and for an
            experiment ``EXPERIMENT_SCOPED_TABLES`` and ``experiments``).
        experiment_id: the experiment removed with this batch (after its last run), if any.
    """

    runs: list[RemovedRun]
    rows: dict[str, int]
    experiment_id: str | None = None


class GcPlan(msgspec.Struct, frozen=True):
    """What a collection is about to remove, counted when it starts (for a progress bar).

    Attributes:
        cutoff_ms: runs deleted at or before, and experiments deleted before, this time
            (ms since the epoch) are removed.
        runs: runs to remove.
        experiments: experiments to remove.
    """

    cutoff_ms: int
    runs: int
    experiments: int


def _deleted_count(status: str) -> int:
    # asyncpg answers a DELETE with its command tag, "DELETE <rows>".
    return int(status.rsplit(" ", 1)[-1])


class GarbageCollector:
    """Removes deleted runs and experiments from the database for good.

    Args:
        conn: a connection of its own (each batch is a transaction on it).
        older_than_ms: only what was deleted at least this long ago is removed.
        experiment_ids: when given, only these experiments' runs (and the experiments
            themselves, if deleted before the cutoff) are considered.
        batch_size: runs per batch (one transaction each), 1 to 10000.
        now_ms: the current time in ms since the epoch (default: the clock).

    Raises:
        InvalidParameter: a negative age or a batch size out of range.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        *,
        older_than_ms: int,
        experiment_ids: Sequence[int] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        now_ms: int | None = None,
    ):
        if older_than_ms < 0:
            raise InvalidParameter(f"older_than must not be negative, got {older_than_ms} ms")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidParameter(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
        self._conn = conn
        self._batch_size = batch_size
        self._experiment_ids = sorted(set(experiment_ids)) if experiment_ids is not None else None
        self.cutoff_ms = (now_ms if now_ms is not None else int(time.time() * 1000)) - older_than_ms

    async def plan(self) -> GcPlan:
        """Check the requested experiments exist and count what is to be removed.

        Raises:
            NotFound: an experiment id given to the collector does not exist.
        """
        with translate_transient():
            if self._experiment_ids is not None:
                found = {
                    row["experiment_id"]
                    for row in await self._conn.fetch(
                        "SELECT experiment_id FROM experiments WHERE experiment_id = ANY($1::bigint[])",
                        self._experiment_ids,
                    )
                }
                missing = [e for e in self._experiment_ids if e not in found]
                if missing:
                    raise NotFound(f"No Experiment with id={missing[0]} exists")
            experiments = await self._deleted_experiments()
            runs = await self._conn.fetchval(_COUNT_RUNS, self.cutoff_ms, self._experiment_ids, experiments)
        return GcPlan(cutoff_ms=self.cutoff_ms, runs=runs, experiments=len(experiments))

    async def batches(self) -> AsyncIterator[GcBatch]:
        """Remove everything due, one committed batch at a time, yielding each.

        First the deleted runs (oldest deletions are no different from recent ones:
        run_id order), then each experiment deleted before the cutoff with the rest
        of its runs. Safe to interrupt and run again: a batch commits whole or not at all.
        """
        while True:
            batch = await self._in_transaction(self._remove_deleted_runs)
            if not batch.runs:
                break
            yield batch
        for experiment_id in await self._deleted_experiments():
            while True:
                batch = await self._in_transaction(self._remove_experiment_batch, experiment_id)
                if batch is None:
                    break  # restored (or removed elsewhere) meanwhile
                yield batch
                if batch.experiment_id is not None:
                    break

    async def _deleted_experiments(self) -> list[int]:
        rows = await self._conn.fetch(_DELETED_EXPERIMENTS, self.cutoff_ms, self._experiment_ids)
        return [row["experiment_id"] for row in rows]

    async def _in_transaction(self, step, *args):
        with translate_transient():
            for attempt in range(1, _BATCH_ATTEMPTS + 1):
                try:
                    async with self._conn.transaction():
                        return await step(*args)
                except asyncpg.exceptions.DeadlockDetectedError:
                    if attempt == _BATCH_ATTEMPTS:
                        raise

    async def _remove_deleted_runs(self) -> GcBatch:
        rows = await self._conn.fetch(_DELETED_RUNS, self.cutoff_ms, self._experiment_ids, self._batch_size)
        return await self._remove_runs(rows)

    async def _remove_experiment_batch(self, experiment_id: int) -> GcBatch | None:
        locked = await self._conn.fetchval(_LOCK_DELETED_EXPERIMENT, experiment_id, self.cutoff_ms)
        if locked is None:
            return None
        rows = await self._conn.fetch(_RUNS_OF_EXPERIMENT, experiment_id, self._batch_size)
        batch = await self._remove_runs(rows)
        if len(rows) == self._batch_size:
            return batch  # more runs may follow; the experiment goes with the last batch
        removed = dict(batch.rows)
        for table in EXPERIMENT_SCOPED_TABLES:
            status = await self._conn.execute(f"DELETE FROM {table} WHERE experiment_id = $1", experiment_id)
            removed[table] = _deleted_count(status)
        status = await self._conn.execute("DELETE FROM experiments WHERE experiment_id = $1", experiment_id)
        removed["experiments"] = _deleted_count(status)
        return GcBatch(runs=batch.runs, rows=removed, experiment_id=str(experiment_id))

    async def _remove_runs(self, rows: list[asyncpg.Record]) -> GcBatch:
        removed: dict[str, int] = {}
        if not rows:
            return GcBatch(runs=[], rows=removed)
        run_ids = [row["run_id"] for row in rows]
        for table in RUN_SCOPED_TABLES:
            status = await self._conn.execute(f"DELETE FROM {table} WHERE run_id = ANY($1::uuid[])", run_ids)
            removed[table] = _deleted_count(status)
        status = await self._conn.execute("DELETE FROM runs WHERE run_id = ANY($1::uuid[])", run_ids)
        removed["runs"] = _deleted_count(status)
        runs = [
            RemovedRun(run_id=row["run_id"].hex, experiment_id=str(row["experiment_id"]), artifact_uri=row["artifact_uri"])
            for row in rows
        ]
        return GcBatch(runs=runs, rows=removed)
