"""Copy an MLflow backend store into the gateway's database, keeping every id.

The copy goes table by table in key order, a batch per transaction: experiments
(with their tags), runs (each batch with its runs' tags, params, metric points as
chunks with their summaries, dataset inputs and model inputs and outputs),
logged models (with params and tags), then the model registry (models, their
tags, versions with their tags, aliases; prompts are registered models). Each
batch records the last key it copied in ``mlflow_import_progress`` in its own
transaction, so an import that was interrupted continues where it stopped and
copies nothing twice. The source is read in one snapshot; the target is written
with COPY.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from gateway.mlflow.wire import LOGGED_MODEL_STATUS_BY_NUMBER
from gateway.store import pgcopy
from gateway.store import points as chunked
from gateway.store.migrations import migrate
from gateway.store.mlflow_import.errors import ImportRefused
from gateway.store.mlflow_import.revisions import HEAD, KNOWN_REVISIONS, LAST_2X_HEAD
from gateway.store.mlflow_import.series import SUMMARY_COLUMNS
from gateway.store.mlflow_import.series_reading import Workers, chunk_pieces, default_worker_count, list_series
from gateway.store.mlflow_import.source import Source, chunked as slices, open_source, placeholders

STEPS = ("experiments", "runs", "logged_models", "registered_models")
_REQUIRED_TABLES = ("alembic_version", "experiments", "experiment_tags", "runs", "metrics", "params", "tags")
# MLflow's registry marks a deleted version with this stage and keeps its number used.
_DELETED_VERSION_STAGE = "Deleted_Internal"
# Ids and names read at once by IN lists (SQLite allows 32766 parameters).
_IN_BATCH = 500
# Runs read at once.
_RUN_PAGE = 10_000
_SUMMARY_COUNT = SUMMARY_COLUMNS.index("point_count")
# A store with more metric points than this has them read by worker processes by default.
_POINTS_WORTH_WORKERS = 1_000_000

_PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS mlflow_import_progress (
    step     text PRIMARY KEY,          -- 'source', or the step: experiments, runs, logged_models, registered_models
    last_key text,                      -- the greatest key the step committed
    done     boolean NOT NULL DEFAULT false,
    detail   jsonb NOT NULL DEFAULT '{}' -- for 'source': what is imported; for a step: rows copied by table
)
"""


@dataclass
class ImportReport:
    """What an import copied (rows by table, over every run of it on this target) and how long this call took."""

    source: str
    revision: str
    copied: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    points_this_call: int = 0
    resumed: bool = False
    dry_run: bool = False
    planned: dict[str, int] = field(default_factory=dict)
    # Every step was done before this call.
    already_done: bool = False

    def summary(self) -> str:
        """A few lines for the terminal."""
        if self.dry_run:
            lines = [f"dry run: would import {self.source} (MLflow schema {self.revision}); nothing copied"]
            lines += [f"  {table:<28} {count:>14,}" for table, count in self.planned.items()]
            return "\n".join(lines)
        if self.already_done:
            lines = [f"{self.source} was imported already (MLflow schema {self.revision}); nothing left to copy"]
            return "\n".join(lines + [f"  {table:<28} {count:>14,}" for table, count in self.copied.items()])
        rate = self.points_this_call / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"imported {self.source} (MLflow schema {self.revision}) in {self.seconds:.1f} s"
            + (" (continued)" if self.resumed else "")
        ]
        lines += [f"  {table:<28} {count:>14,}" for table, count in self.copied.items()]
        lines.append(f"  metric points per second: {rate:,.0f}")
        return "\n".join(lines)


@contextlib.contextmanager
def _cycle_collector_paused():
    """Pause Python's cycle collector while the runs are copied.

    The points are read by the hundred thousand, as tuples and lists that the
    collector would scan again and again while they live (about 40 % of the
    import's CPU from SQLite); what the copy makes is freed by reference counts.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


@dataclass
class _Schema:
    revision: str
    tables: set[str]
    input_step: bool
    deleted_time: bool
    has_logged_models: bool
    model_metric_rows: int
    # MLflow's (run_uuid, key, step) index on metrics (3.x): points read in its order need no sort.
    metrics_by_run_key_step: bool
    # The FROM clause that reads metrics through that index.
    metrics_by_key_order: str


async def _inspect(source: Source) -> _Schema:
    tables = await source.tables()
    missing = [t for t in _REQUIRED_TABLES if t not in tables]
    if missing:
        raise ImportRefused(f"{source.label} is not an MLflow store: it has no {', '.join(missing)} table")
    versions = [row[0] for row in await source.fetch("SELECT version_num FROM alembic_version")]
    if len(versions) != 1 or versions[0] not in KNOWN_REVISIONS:
        found = ", ".join(versions) or "none"
        raise ImportRefused(
            f"{source.label} has MLflow schema revision {found}, which this importer does not read: it reads "
            f"MLflow 2.22 ({LAST_2X_HEAD}) up to MLflow 3.17.2 ({HEAD}). Upgrade the store with MLflow 3.17.2 "
            f"first (`mlflow db upgrade <uri>`; back it up before)."
        )
    for table in ("experiments", "registered_models"):
        if table in tables and "workspace" in await source.columns(table):
            others = await source.fetchval(f"SELECT count(*) FROM {table} WHERE workspace <> 'default'")
            if others:
                raise ImportRefused(
                    f"{source.label} uses MLflow workspaces ({others} {table.replace('_', ' ')} outside the "
                    f"default workspace); the gateway has none, so only stores of the default workspace import"
                )
    odd = await source.fetchval(f"SELECT run_uuid FROM runs WHERE {source.not_run_id('run_uuid')} LIMIT 1")
    if odd is not None:
        raise ImportRefused(f"run id {odd!r} is not 32 lowercase hex digits, which the gateway's run ids are")
    has_logged_models = {"logged_models", "logged_model_params", "logged_model_tags", "logged_model_metrics"} <= tables
    return _Schema(
        revision=versions[0],
        tables=tables,
        input_step="inputs" in tables and "step" in await source.columns("inputs"),
        deleted_time="deleted_time" in await source.columns("runs"),
        has_logged_models=has_logged_models,
        metrics_by_run_key_step=await source.has_index("metrics", ("run_uuid", "key", "step")),
        metrics_by_key_order=await source.through_index("metrics", ("run_uuid", "key", "step")),
        model_metric_rows=(
            int(await source.fetchval("SELECT count(*) FROM logged_model_metrics")) if has_logged_models else 0
        ),
    )


async def _source_counts(source: Source, schema: _Schema) -> dict[str, int]:
    async def count(table: str, where: str = "") -> int:
        if table not in schema.tables:
            return 0
        return int(await source.fetchval(f"SELECT count(*) FROM {table} {where}"))

    counts = {
        "experiments": await count("experiments"),
        "experiment tags": await count("experiment_tags"),
        "runs": await count("runs"),
        "run tags": await count("tags"),
        "params": await count("params"),
        "metric points": await count("metrics"),
        "dataset inputs": await count("inputs", "WHERE source_type = 'DATASET' AND destination_type = 'RUN'"),
        "model inputs": await count("inputs", "WHERE source_type = 'RUN_INPUT'"),
        "model outputs": await count("inputs", "WHERE source_type = 'RUN_OUTPUT'"),
        "logged models": await count("logged_models"),
        "logged model params": await count("logged_model_params"),
        "logged model tags": await count("logged_model_tags"),
        "registered models": await count("registered_models"),
        "registered model tags": await count("registered_model_tags"),
        "model versions": await count("model_versions", f"WHERE current_stage <> '{_DELETED_VERSION_STAGE}'"),
        "model version tags": await count("model_version_tags"),
        "registered model aliases": await count("registered_model_aliases"),
    }
    return counts


class _Progress:
    """A step's committed position and its tallies, written inside each batch's transaction."""

    def __init__(self, step: str, last_key: str | None, done: bool, counts: dict[str, int]):
        self.step = step
        self.last_key = last_key
        self.done = done
        self.counts = counts

    async def commit(self, conn: asyncpg.Connection, last_key: str, copied: dict[str, int] | None = None, *,
                     done: bool = False) -> None:
        """Record ``last_key`` and add ``copied`` (rows by table) to the tallies, in ``conn``'s transaction."""
        detail = await conn.fetchval(
            """UPDATE mlflow_import_progress p
               SET last_key = $2, done = $3,
                   detail = (SELECT coalesce(jsonb_object_agg(k, coalesce((p.detail ->> k)::bigint, 0)
                                                             + coalesce(($4::jsonb ->> k)::bigint, 0)), '{}')
                             FROM (SELECT jsonb_object_keys(p.detail) UNION SELECT jsonb_object_keys($4::jsonb)) AS keys(k))
               WHERE step = $1 RETURNING detail""",
            self.step, last_key, done, json.dumps(copied or {}),
        )
        self.last_key = last_key
        self.done = done
        self.counts = json.loads(detail)


class _Bar:
    """A progress bar on stderr (tqdm), or nothing."""

    def __init__(self, show: bool, desc: str, total: int | None, unit: str, initial: int = 0):
        self._bar = None
        if show:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                             dynamic_ncols=True, unit_scale=unit == "pt", leave=True)

    def update(self, count: int, **postfix) -> None:
        if self._bar is not None:
            self._bar.update(count)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class MlflowImporter:
    """One import of an MLflow store into a gateway database.

    Args:
        source: the opened MLflow store.
        conn: a connection to the gateway's database (migrated by :meth:`run`).
        merge: add to a database that already holds data, if no id or name collides.
        batch_runs: runs copied per transaction.
        show_progress: draw a progress bar per table on stderr.
        spares: more connections to the gateway's database, to copy as many more batches of runs at once.
        workers: worker processes that read the batches' metric points (from SQLite or MySQL).
    """

    def __init__(self, source: Source, conn: asyncpg.Connection, *, merge: bool = False, batch_runs: int = 100,
                 show_progress: bool = True, spares: Sequence[asyncpg.Connection] = (),
                 workers: Workers | None = None):
        self.source = source
        self.conn = conn
        # Batches of runs go on these at once.
        self.connections = [conn, *spares]
        self.workers = workers
        self.merge = merge
        self.batch_runs = batch_runs
        self.show_progress = show_progress
        self.points_copied = 0

    # ---- checks -------------------------------------------------------------------------

    async def _target_state(self) -> dict:
        return dict(await self.conn.fetchrow(
            """SELECT (SELECT count(*) FROM experiments WHERE experiment_id <> 0) AS experiments,
                      (SELECT count(*) FROM runs) AS runs,
                      (SELECT count(*) FROM logged_models) AS logged_models,
                      (SELECT count(*) FROM registered_models) AS registered_models,
                      (SELECT count(*) FROM experiment_tags WHERE experiment_id = 0) AS default_tags,
                      (SELECT count(*) FROM experiments WHERE experiment_id = 0) AS has_default"""
        ))

    async def _collisions(self, schema: _Schema) -> list[str]:
        """Ids and names the source shares with the target (the Default experiment aside)."""
        found: list[str] = []
        target = {row[0]: row[1] for row in await self.conn.fetch("SELECT experiment_id, name FROM experiments")}
        names = {name: experiment_id for experiment_id, name in target.items()}
        for experiment_id, name in await self.source.fetch("SELECT experiment_id, name FROM experiments"):
            if experiment_id == 0 and target.get(0) == name == "Default":
                continue
            if experiment_id in target:
                found.append(f"experiment id {experiment_id}")
            elif name in names:
                found.append(f"experiment name {name!r}")

        async def clashing(sql: str, check: str, label: str, cast=lambda v: v) -> None:
            async for rows in self.source.stream(sql, batch=10_000):
                ids = [cast(row[0]) for row in rows]
                for row in await self.conn.fetch(check, ids):
                    found.append(f"{label} {row[0] if not isinstance(row[0], uuid.UUID) else row[0].hex}")
                if len(found) > 20:
                    return

        await clashing("SELECT run_uuid FROM runs", "SELECT run_id FROM runs WHERE run_id = ANY($1::uuid[]) LIMIT 10",
                       "run id")
        if schema.has_logged_models:
            await clashing("SELECT model_id FROM logged_models",
                           "SELECT model_id FROM logged_models WHERE model_id = ANY($1::text[]) LIMIT 10",
                           "logged model id")
        if "registered_models" in schema.tables:
            await clashing("SELECT name FROM registered_models",
                           "SELECT name FROM registered_models WHERE name = ANY($1::text[]) LIMIT 10",
                           "registered model")
        return found

    async def _start(self, schema: _Schema) -> tuple[dict, dict[str, _Progress], bool]:
        """Read or begin the progress of this import; refuse a target it may not write."""
        await self.conn.execute(_PROGRESS_TABLE)
        rows = {row["step"]: row for row in await self.conn.fetch("SELECT * FROM mlflow_import_progress")}
        source_row = rows.get("source")
        identity = {"source": self.source.label, "revision": schema.revision}
        if source_row is not None:
            detail = json.loads(source_row["detail"])
            if {"source": detail.get("source"), "revision": detail.get("revision")} != identity:
                raise ImportRefused(
                    f"this gateway database holds an import of {detail.get('source')} (schema "
                    f"{detail.get('revision')}); it continues only that import"
                )
            progress = {
                step: _Progress(step, rows[step]["last_key"], rows[step]["done"], json.loads(rows[step]["detail"]))
                for step in STEPS
            }
            return detail, progress, True
        state = await self._target_state()
        holds_data = state["experiments"] or state["runs"] or state["logged_models"] or state["registered_models"]
        detail = {**identity, "merge": self.merge, "replace_default": False}
        if holds_data or state["default_tags"]:
            if not self.merge:
                raise ImportRefused(
                    f"the gateway database is not empty ({state['experiments']} experiments besides Default, "
                    f"{state['runs']} runs, {state['logged_models']} logged models, {state['registered_models']} "
                    "registered models); import into an empty database, or pass --merge to add to this one "
                    "when no id collides"
                )
            collisions = await self._collisions(schema)
            if collisions:
                shown = ", ".join(collisions[:10]) + (", ..." if len(collisions) > 10 else "")
                raise ImportRefused(f"cannot merge: the gateway database already has {shown}")
        else:
            # Only the Default experiment a new database starts with: the store's own replaces it.
            detail["replace_default"] = bool(state["has_default"])
        async with self.conn.transaction():
            await self.conn.execute(
                "INSERT INTO mlflow_import_progress (step, detail) VALUES ('source', $1::jsonb)", json.dumps(detail)
            )
            await self.conn.executemany(
                "INSERT INTO mlflow_import_progress (step) VALUES ($1)", [(step,) for step in STEPS]
            )
        return detail, {step: _Progress(step, None, False, {}) for step in STEPS}, False

    # ---- the import ---------------------------------------------------------------------

    async def run(self, *, dry_run: bool = False) -> ImportReport:
        """Check, then copy what is left to copy.

        Raises:
            ImportRefused: the source is not a store this reads, or the target may not be written;
                nothing was copied.
        """
        started = time.monotonic()
        schema = await _inspect(self.source)
        await migrate(self.conn)
        report = ImportReport(source=self.source.label, revision=schema.revision, dry_run=dry_run)
        if dry_run:
            await self._dry_run_checks(schema)
            report.planned = await _source_counts(self.source, schema)
            return report
        detail, progress, report.resumed = await self._start(schema)
        report.already_done = all(progress[step].done for step in STEPS)
        self._schema = schema
        self._detail = detail
        if not progress["experiments"].done:
            await self._experiments(progress["experiments"])
        if not progress["runs"].done:
            with _cycle_collector_paused():
                await self._runs(progress["runs"])
        if not progress["logged_models"].done:
            await self._logged_models(progress["logged_models"])
        if not progress["registered_models"].done:
            await self._registry(progress["registered_models"])
        for step in STEPS:
            for table, count in progress[step].counts.items():
                report.copied[table] = report.copied.get(table, 0) + count
        report.seconds = time.monotonic() - started
        report.points_this_call = self.points_copied
        return report

    async def _dry_run_checks(self, schema: _Schema) -> None:
        exists = await self.conn.fetchval("SELECT to_regclass('mlflow_import_progress') IS NOT NULL")
        if exists:
            row = await self.conn.fetchrow("SELECT detail FROM mlflow_import_progress WHERE step = 'source'")
            if row is not None:
                return
        state = await self._target_state()
        holds_data = state["experiments"] or state["runs"] or state["logged_models"] or state["registered_models"]
        if (holds_data or state["default_tags"]) and not self.merge:
            raise ImportRefused("the gateway database is not empty; an import would refuse it (see --merge)")
        if (holds_data or state["default_tags"]) and self.merge:
            collisions = await self._collisions(schema)
            if collisions:
                raise ImportRefused(f"cannot merge: the gateway database already has {', '.join(collisions[:10])}")

    # ---- experiments --------------------------------------------------------------------

    async def _experiments(self, progress: _Progress) -> None:
        after = int(progress.last_key) if progress.last_key is not None else -1
        ids = [row[0] for row in await self.source.fetch(
            "SELECT experiment_id FROM experiments WHERE experiment_id > $1 ORDER BY experiment_id", after)]
        bar = _Bar(self.show_progress, "experiments", len(ids) + progress.counts.get("experiments", 0), "exp",
                   progress.counts.get("experiments", 0))
        skip_default = self._detail.get("merge") and not self._detail.get("replace_default")
        for batch in slices(ids, _IN_BATCH):
            marks = placeholders(len(batch))
            rows = await self.source.fetch(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time "
                f"FROM experiments WHERE experiment_id IN ({marks}) ORDER BY experiment_id", *batch)
            tags = await self.source.fetch(
                f'SELECT experiment_id, "key", value FROM experiment_tags WHERE experiment_id IN ({marks})', *batch)
            if skip_default:
                rows = [row for row in rows if row[0] != 0]
                tags = [tag for tag in tags if tag[0] != 0]
            records = [
                (eid, name, location or "", stage or "active",
                 created if created is not None else (updated or 0), updated if updated is not None else (created or 0))
                for eid, name, location, stage, created, updated in rows
            ]
            async with self.conn.transaction():
                if self._detail.get("replace_default") and 0 in batch:
                    await self.conn.execute("DELETE FROM experiments WHERE experiment_id = 0")
                await self.conn.copy_records_to_table(
                    "experiments", records=records,
                    columns=["experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                             "last_update_time"])
                await self.conn.copy_records_to_table(
                    "experiment_tags", records=[(eid, key, value or "") for eid, key, value in tags],
                    columns=["experiment_id", "key", "value"])
                await progress.commit(self.conn, str(batch[-1]),
                                      {"experiments": len(records), "experiment tags": len(tags)})
            bar.update(len(batch))
        async with self.conn.transaction():
            # New experiments of the gateway take ids after the imported ones.
            await self.conn.execute(
                """SELECT setval('experiment_id_seq', greatest(
                          (SELECT last_value FROM experiment_id_seq), (SELECT max(experiment_id) FROM experiments), 1))""")
            await progress.commit(self.conn, progress.last_key, done=True)
        bar.close()

    # ---- runs ---------------------------------------------------------------------------

    async def _runs(self, progress: _Progress) -> None:
        after = progress.last_key or ""
        total_runs = int(await self.source.fetchval("SELECT count(*) FROM runs"))
        done_runs = progress.counts.get("runs", 0)
        run_bar = _Bar(self.show_progress, "runs", total_runs, "run", done_runs)
        point_bar = _Bar(self.show_progress, "metric points", await self.source.estimated_rows("metrics"), "pt",
                         progress.counts.get("metric points", 0))
        deleted_time = "deleted_time" if self._schema.deleted_time else "NULL"
        runs_sql = (
            "SELECT run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, "
            f"lifecycle_stage, {deleted_time} FROM runs WHERE run_uuid > $1 ORDER BY run_uuid LIMIT {_RUN_PAGE}"
        )
        # Two batches go at once, each on a connection of its own: while one is made into chunks
        # in the database, the next is read from the store. Each commits after the one before it,
        # so the position recorded only moves forward.
        free: asyncio.Queue = asyncio.Queue()
        for conn in self.connections:
            free.put_nowait(conn)
        in_flight: list[asyncio.Future] = []

        async def copy(batch: list[tuple], before: asyncio.Future | None) -> None:
            conn = await free.get()
            try:
                await self._run_batch(conn, batch, progress, run_bar, point_bar, before)
            finally:
                free.put_nowait(conn)

        async def start(batch: list[tuple]) -> None:
            while len(in_flight) >= len(self.connections):
                await in_flight.pop(0)
            in_flight.append(asyncio.ensure_future(copy(batch, in_flight[-1] if in_flight else None)))

        pending: list[tuple] = []
        try:
            # Read a page at a time, not as one stream: a MySQL stream holds its connection until it
            # ends, and the batches read the store meanwhile.
            while rows := await self.source.fetch(runs_sql, after):
                after = rows[-1][0]
                pending.extend(rows)
                while len(pending) >= 10 * self.batch_runs:
                    batch, pending = pending[: self.batch_runs], pending[self.batch_runs:]
                    await start(batch)
            for batch in slices(pending, self.batch_runs):
                await start(batch)
            while in_flight:
                await in_flight.pop(0)
        finally:
            for future in in_flight:
                future.cancel()
            for future in in_flight:
                with contextlib.suppress(BaseException):
                    await future
        async with self.conn.transaction():
            await progress.commit(self.conn, progress.last_key or "", done=True)
        run_bar.close()
        point_bar.close()

    async def _run_batch(self, conn: asyncpg.Connection, runs: list[tuple], progress: _Progress, run_bar: _Bar,
                         point_bar: _Bar, before: asyncio.Future | None) -> None:
        low, high = runs[0][0], runs[-1][0]
        # run -> (experiment_id, start_time). Looked up in lowercase: on MySQL, whose collation folds
        # case, MLflow stores a tag or param under the run id as the client spelled it.
        placed = {row[0]: (row[1], row[5]) for row in runs}
        source = self.source
        tags = await source.fetch('SELECT run_uuid, "key", value FROM tags WHERE run_uuid BETWEEN $1 AND $2', low, high)
        params = await source.fetch(
            'SELECT run_uuid, "key", value FROM params WHERE run_uuid BETWEEN $1 AND $2', low, high)
        datasets, model_inputs, model_outputs = await self._inputs(low, high)
        model_points = await self._model_points(low, high)
        run_records = [
            (run_id, experiment_id, name or "", user_id or "", status or "RUNNING", start, end, artifact_uri or "",
             stage or "active", deleted)
            for run_id, experiment_id, name, user_id, status, start, end, artifact_uri, stage, deleted in runs
        ]
        async with conn.transaction():
            await conn.copy_records_to_table(
                "runs", records=run_records,
                columns=["run_id", "experiment_id", "name", "user_id", "status", "start_time", "end_time",
                         "artifact_uri", "lifecycle_stage", "deleted_time"])
            await conn.copy_records_to_table(
                "run_tags", records=[(r, k, v or "", *placed[r.lower()]) for r, k, v in tags],
                columns=["run_id", "key", "value", "experiment_id", "start_time"])
            await conn.copy_records_to_table(
                "params", records=[(r, k, v or "", *placed[r.lower()]) for r, k, v in params],
                columns=["run_id", "key", "value", "experiment_id", "start_time"])
            points = await self._copy_metrics(conn, low, high, model_points, point_bar)
            await conn.copy_records_to_table(
                "run_dataset_inputs", records=datasets,
                columns=["run_id", "name", "digest", "source_type", "source", "schema", "profile", "tags", "position"])
            await conn.copy_records_to_table("run_model_inputs", records=model_inputs, columns=["run_id", "model_id"])
            await conn.copy_records_to_table(
                "run_model_outputs", records=model_outputs, columns=["run_id", "model_id", "step"])
            if before is not None:
                await before
            await progress.commit(conn, high, {
                "runs": len(runs), "run tags": len(tags), "params": len(params), "metric points": points,
                "dataset inputs": len(datasets), "model inputs": len(model_inputs),
                "model outputs": len(model_outputs)})
        self.points_copied += points
        run_bar.update(len(runs))

    async def _inputs(self, low: str, high: str) -> tuple[list, list, list]:
        if "inputs" not in self._schema.tables or "datasets" not in self._schema.tables:
            return [], [], []
        rows = await self.source.fetch(
            """SELECT i.destination_id, i.input_uuid, d.name, d.digest, d.dataset_source_type, d.dataset_source,
                      d.dataset_schema, d.dataset_profile
               FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id
               WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN'
                 AND i.destination_id BETWEEN $1 AND $2""",
            low, high)
        tags: dict[str, list] = {}
        if rows and "input_tags" in self._schema.tables:
            for input_uuid, name, value in await self.source.fetch(
                """SELECT t.input_uuid, t.name, t.value FROM input_tags t JOIN inputs i ON i.input_uuid = t.input_uuid
                   WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN'
                     AND i.destination_id BETWEEN $1 AND $2""",
                low, high,
            ):
                tags.setdefault(input_uuid, []).append({"key": name, "value": value})
        datasets = []
        position: dict[str, int] = {}
        for run_id, input_uuid, name, digest, source_type, source, schema, profile in rows:
            position[run_id] = position.get(run_id, 0) + 1
            datasets.append((run_id, name, digest, source_type, source, schema, profile,
                             json.dumps(tags.get(input_uuid, [])), position[run_id]))
        model_inputs = [
            (run_id, model_id) for run_id, model_id in await self.source.fetch(
                "SELECT source_id, destination_id FROM inputs WHERE source_type = 'RUN_INPUT' "
                "AND destination_type = 'MODEL_INPUT' AND source_id BETWEEN $1 AND $2", low, high)
        ]
        step = "step" if self._schema.input_step else "0"
        model_outputs = [
            (run_id, model_id, step_value or 0) for run_id, model_id, step_value in await self.source.fetch(
                f"SELECT source_id, destination_id, {step} FROM inputs WHERE source_type = 'RUN_OUTPUT' "
                "AND destination_type = 'MODEL_OUTPUT' AND source_id BETWEEN $1 AND $2", low, high)
        ]
        return datasets, model_inputs, model_outputs

    async def _model_points(self, low: str, high: str) -> dict[tuple[str, str], dict[tuple, tuple]]:
        """The logged-model metric points of the runs, by (run, key): (step, timestamp, value) -> model, dataset."""
        if not self._schema.model_metric_rows:
            return {}
        found: dict[tuple[str, str], dict[tuple, tuple]] = {}
        for run_id, key, step, timestamp, value, model_id, name, digest in await self.source.fetch(
            """SELECT run_id, metric_name, metric_step, metric_timestamp_ms, metric_value, model_id, dataset_name,
                      dataset_digest
               FROM logged_model_metrics WHERE run_id BETWEEN $1 AND $2 ORDER BY model_id""",
            low, high,
        ):
            found.setdefault((run_id, key), {}).setdefault(
                (step, timestamp, value if value is not None else 0.0), (model_id, name, digest))
        return found

    async def _copy_metrics(self, conn: asyncpg.Connection, low: str, high: str, model_points: dict,
                            point_bar: _Bar) -> int:
        """Copy the metric points of the runs from ``low`` to ``high`` as chunks, with their summaries.

        Each series is read whole in the store's index order and made into sealed chunks
        (series_reading.py): by a worker process if there are some, else here, where the
        chunks go out by one binary COPY as they are made.
        """
        schema = self._schema
        batch = await list_series(self.source, low, high,
                                  schema.metrics_by_key_order if schema.metrics_by_run_key_step else None)
        summaries: list[tuple] = []
        if self.workers is not None:
            pieces = self.workers.chunk_pieces(self.source, batch, model_points, summaries)
        else:
            pieces = chunk_pieces(self.source, batch, model_points, summaries)

        async def copy_data():
            yield pgcopy.HEADER
            async with contextlib.aclosing(pieces):
                async for piece in pieces:
                    yield piece
            yield pgcopy.TRAILER

        await conn.copy_to_table("metric_chunks", source=copy_data(), columns=chunked.CHUNK_COLUMNS,
                                 format="binary")
        await conn.copy_records_to_table("metric_summaries", records=summaries, columns=SUMMARY_COLUMNS)
        copied = sum(summary[_SUMMARY_COUNT] for summary in summaries)
        point_bar.update(copied)
        return copied

    # ---- logged models ------------------------------------------------------------------

    async def _logged_models(self, progress: _Progress) -> None:
        if not self._schema.has_logged_models:
            async with self.conn.transaction():
                await progress.commit(self.conn, "", done=True)
            return
        after = progress.last_key or ""
        # Ordered and compared here, not by the store's collation (MySQL's folds case).
        ids = sorted(model_id for (model_id,) in await self.source.fetch("SELECT model_id FROM logged_models")
                     if model_id > after)
        bar = _Bar(self.show_progress, "logged models", len(ids) + progress.counts.get("logged models", 0), "model",
                   progress.counts.get("logged models", 0))
        for batch in slices(ids, _IN_BATCH):
            marks = placeholders(len(batch))
            models = await self.source.fetch(
                "SELECT model_id, experiment_id, name, artifact_location, creation_timestamp_ms, "
                "last_updated_timestamp_ms, status, status_message, lifecycle_stage, model_type, source_run_id "
                f"FROM logged_models WHERE model_id IN ({marks})", *batch)
            params = await self.source.fetch(
                f"SELECT model_id, param_key, param_value FROM logged_model_params WHERE model_id IN ({marks})", *batch)
            tags = await self.source.fetch(
                f"SELECT model_id, tag_key, tag_value FROM logged_model_tags WHERE model_id IN ({marks})", *batch)
            records = [
                (model_id, experiment_id, name, location, created, updated,
                 LOGGED_MODEL_STATUS_BY_NUMBER.get(status, "UNSPECIFIED"), message, stage or "active", model_type, run_id)
                for model_id, experiment_id, name, location, created, updated, status, message, stage, model_type,
                run_id in models
            ]
            async with self.conn.transaction():
                await self.conn.copy_records_to_table(
                    "logged_models", records=records,
                    columns=["model_id", "experiment_id", "name", "artifact_location", "creation_timestamp_ms",
                             "last_updated_timestamp_ms", "status", "status_message", "lifecycle_stage", "model_type",
                             "source_run_id"])
                await self.conn.copy_records_to_table(
                    "logged_model_params", records=[(m, k, v or "") for m, k, v in params],
                    columns=["model_id", "key", "value"])
                await self.conn.copy_records_to_table(
                    "logged_model_tags", records=[(m, k, v or "") for m, k, v in tags],
                    columns=["model_id", "key", "value"])
                await progress.commit(self.conn, batch[-1], {
                    "logged models": len(records), "logged model params": len(params),
                    "logged model tags": len(tags)})
            bar.update(len(batch))
        async with self.conn.transaction():
            await progress.commit(self.conn, progress.last_key or "", done=True)
        bar.close()

    # ---- the model registry -------------------------------------------------------------

    async def _registry(self, progress: _Progress) -> None:
        tables = self._schema.tables
        if not {"registered_models", "model_versions"} <= tables:
            async with self.conn.transaction():
                await progress.commit(self.conn, "", done=True)
            return
        after = progress.last_key or ""
        names = sorted(n for (n,) in await self.source.fetch("SELECT name FROM registered_models") if n > after)
        bar = _Bar(self.show_progress, "registered models",
                   len(names) + progress.counts.get("registered models", 0), "model",
                   progress.counts.get("registered models", 0))
        for batch in slices(names, _IN_BATCH):
            marks = placeholders(len(batch))
            models = await self.source.fetch(
                "SELECT name, creation_time, last_updated_time, description FROM registered_models "
                f"WHERE name IN ({marks})", *batch)
            # Each row under its model's name as the model has it (on MySQL, whose collation folds case,
            # MLflow stores a version under the name as the client spelled it).
            of_models = f"t JOIN registered_models m ON m.name = t.name WHERE m.name IN ({marks})"
            versions = await self.source.fetch(
                "SELECT m.name, t.version, t.creation_time, t.last_updated_time, t.description, t.current_stage, "
                f"t.source, t.run_id, t.run_link, t.storage_location FROM model_versions {of_models}", *batch)
            model_tags = await self._rows_of("registered_model_tags", 'SELECT m.name, t."key", t.value FROM '
                                             f"registered_model_tags {of_models}", batch)
            version_tags = await self._rows_of("model_version_tags", 'SELECT m.name, t.version, t."key", t.value FROM '
                                               f"model_version_tags {of_models}", batch)
            aliases = await self._rows_of("registered_model_aliases", "SELECT m.name, t.alias, t.version FROM "
                                          f"registered_model_aliases {of_models}", batch)
            last_version: dict[str, int] = {}
            for version in versions:
                last_version[version[0]] = max(last_version.get(version[0], 0), version[1])
            live = [v for v in versions if v[5] != _DELETED_VERSION_STAGE]
            live_keys = {(v[0], v[1]) for v in live}
            async with self.conn.transaction():
                keyed = await self.conn.fetch(
                    """INSERT INTO registered_models (name, creation_time, last_updated_time, description, last_version)
                       SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int4[])
                       RETURNING model_key, name""",
                    [m[0] for m in models], [m[1] or 0 for m in models], [m[2] or m[1] or 0 for m in models],
                    [m[3] or "" for m in models], [last_version.get(m[0], 0) for m in models])
                key_of = {row["name"]: row["model_key"] for row in keyed}
                await self.conn.copy_records_to_table(
                    "model_versions",
                    records=[
                        (key_of[name], version, created or 0, updated or created or 0, description,
                         stage or "None", source or "", storage or source or "", run_id, run_link or "")
                        for name, version, created, updated, description, stage, source, run_id, run_link, storage
                        in live
                    ],
                    columns=["model_key", "version", "creation_time", "last_updated_time", "description",
                             "current_stage", "source", "storage_location", "source_run_id", "run_link"])
                await self.conn.copy_records_to_table(
                    "registered_model_tags", records=[(key_of[n], k, v or "") for n, k, v in model_tags],
                    columns=["model_key", "key", "value"])
                kept_version_tags = [(key_of[n], ver, k, v or "") for n, ver, k, v in version_tags
                                     if (n, ver) in live_keys]
                await self.conn.copy_records_to_table(
                    "model_version_tags", records=kept_version_tags, columns=["model_key", "version", "key", "value"])
                await self.conn.copy_records_to_table(
                    "registered_model_aliases", records=[(key_of[n], alias, ver) for n, alias, ver in aliases],
                    columns=["model_key", "alias", "version"])
                await progress.commit(self.conn, batch[-1], {
                    "registered models": len(models), "model versions": len(live),
                    "registered model tags": len(model_tags), "model version tags": len(kept_version_tags),
                    "registered model aliases": len(aliases)})
            bar.update(len(batch))
        async with self.conn.transaction():
            await progress.commit(self.conn, progress.last_key or "", done=True)
        bar.close()

    async def _rows_of(self, table: str, sql: str, args: Sequence) -> list[tuple]:
        if table not in self._schema.tables:
            return []
        return await self.source.fetch(sql, *args)


async def import_mlflow(
    source_uri: str, database_url: str, *, merge: bool = False, dry_run: bool = False, batch_runs: int = 100,
    show_progress: bool = True, workers: int | None = None,
) -> ImportReport:
    """Import the MLflow store at ``source_uri`` into the gateway database at ``database_url``.

    Args:
        source_uri: ``sqlite:///path/mlflow.db``, ``postgresql://...`` or ``mysql://...``, as ``mlflow server``
            takes it.
        database_url: the gateway's PostgreSQL; migrated first.
        merge: add to a database that holds data already, if no id or name collides.
        dry_run: check both sides and count what would be copied; copy nothing.
        batch_runs: runs per transaction.
        show_progress: draw progress bars on stderr.
        workers: processes reading metric points from a SQLite or MySQL store (0: read them in this
            one); None: one per core, for a store of more than a million points.

    Returns:
        the report (rows by table, time, points per second).

    Raises:
        ImportRefused: bad source or target; nothing was copied by this call.
    """
    source = await open_source(source_uri)
    pool = None
    connections: list[asyncpg.Connection] = []
    try:
        if source.dialect != "postgresql" and not dry_run:
            if workers is None:
                big = ("metrics" in await source.tables()
                       and await source.estimated_rows("metrics") > _POINTS_WORTH_WORKERS)
                workers = default_worker_count() if big else 0
            if workers > 0:
                pool = Workers(source_uri, workers)
        # A batch in flight per worker, and at least two: one read while the other is written.
        for _ in range(max(2, workers or 0)):
            connections.append(await asyncpg.connect(database_url))
        importer = MlflowImporter(source, connections[0], merge=merge, batch_runs=batch_runs,
                                  show_progress=show_progress, spares=connections[1:], workers=pool)
        return await importer.run(dry_run=dry_run)
    finally:
        for conn in connections:
            await conn.close()
        if pool is not None:
            pool.close()
        await source.close()
