"""Property test: the compiled search on a real PostgreSQL agrees with the plain-Python evaluator.

Hypothesis generates a data set (runs with metric points over several steps,
params, tags, attributes, dataset inputs, deleted runs, a run of another
experiment) and a handful of searches drawn from MLflow's grammar (every
entity prefix, key quoting, comparator, MIN/MAX/LATEST, order_by keys). The
data goes in through the real COPY writer, so the summaries it builds are
checked too: the evaluator sees summaries recomputed here from the points.
Each search is paged through with a small page size; the ids, their order and
the page boundaries must match the evaluator's sorted list.

User text travels in keys and values (quotes, backslashes, ``;--``, LIKE
wildcards), and the tables must still be there afterwards.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import string
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidParameter
from gateway.model import FLOAT_MAX, KeyValue, MetricPoint, RunWrite
from gateway.search import compile_run_search, evaluate, next_run_page_token, parse_run_order_by
from gateway.store.export import runs_csv
from gateway.store.migrations import migrate
from gateway.store.searching import fetch_page
from gateway.store.writer import BatchWriter

EXPERIMENT = 1
OTHER_EXPERIMENT = 2

METRIC_KEYS = ["loss", "m 2", "a.b", "x-y/z"]
KEYED_KEYS = ["p", "p 2", "a.b", "x-y/z"]
TEXT_VALUES = [
    "a", "A", "ab", "aB", "b", "", "a%b", "a_b", "a\\b", "50%", "it's", 'say "hi"',
    "'; DROP TABLE runs; --", "x' OR '1'='1",
]
METRIC_VALUES = [0.0, -1.5, 1.5, 2.0, 1e-300, FLOAT_MAX, -FLOAT_MAX, math.nan]
NUMBER_LITERALS = [0.0, -1.5, 1.5, 2.0, 1e-300, FLOAT_MAX, -FLOAT_MAX, 3, -7, "1e400", "-1e400", "-0.0"]
NAMES = ["alpha", "Alpha", "beta", "a%b", "a_b", "r'1"]
STATUSES = ["RUNNING", "FINISHED", "FAILED"]
USERS = ["alice", "bob", ""]
TIMES = [None, 0, 5, 5, 10]
DATASET_NAMES = ["train", "eval"]
DATASET_DIGESTS = ["d1", "d2"]
CONTEXTS = ["training", "testing"]
LIKE_PATTERNS = ["a%", "%b", "_", "a_b", "A%", "%", "%\\%%", "a\\_b", "%'%", "%;--%"]

_BARE_KEY = re.compile(r"\w+(?:\.\w+)*")


# ---------------------------------------------------------------------------
# Data sets


@st.composite
def metric_points(draw):
    """Points of one key: several steps, with ties on step and timestamp."""
    count = draw(st.integers(1, 4))
    return [
        (draw(st.integers(0, 3)), draw(st.integers(0, 2)), draw(st.sampled_from(METRIC_VALUES)))
        for _ in range(count)
    ]


@st.composite
def run_data(draw, experiment_id):
    return {
        "run_id": uuid.UUID(int=draw(st.integers(1, 2**128 - 1))).hex,
        "experiment_id": experiment_id,
        "name": draw(st.sampled_from(NAMES)),
        "status": draw(st.sampled_from(STATUSES)),
        "user_id": draw(st.sampled_from(USERS)),
        "artifact_uri": draw(st.sampled_from(["s3://b/1", "s3://b/2"])),
        "lifecycle_stage": draw(st.sampled_from(["active", "active", "deleted"])),
        "start_time": draw(st.sampled_from(TIMES)),
        "end_time": draw(st.sampled_from(TIMES)),
        "points": draw(st.dictionaries(st.sampled_from(METRIC_KEYS), metric_points(), max_size=3)),
        "params": draw(st.dictionaries(st.sampled_from(KEYED_KEYS), st.sampled_from(TEXT_VALUES), max_size=3)),
        "tags": draw(st.dictionaries(st.sampled_from(KEYED_KEYS), st.sampled_from(TEXT_VALUES), max_size=3)),
        "datasets": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(DATASET_NAMES), st.sampled_from(DATASET_DIGESTS), st.sampled_from(CONTEXTS)
                ),
                max_size=2,
                unique_by=lambda d: d[:2],
            )
        ),
    }


@st.composite
def data_sets(draw):
    runs = draw(st.lists(run_data(EXPERIMENT), max_size=8, unique_by=lambda r: r["run_id"]))
    others = draw(st.lists(run_data(OTHER_EXPERIMENT), max_size=1))
    taken = {run["run_id"] for run in runs}
    return runs + [run for run in others if run["run_id"] not in taken]


def _value_rank(value: float) -> tuple[int, float]:
    # The latest point is the greatest (step, timestamp, value); NaN is the greatest value.
    return (1, 0.0) if math.isnan(value) else (0, value)


def summary_of(points: list[tuple[int, int, float]]) -> dict:
    """Latest, min and max of a key's points, computed from the points alone."""
    latest = max(points, key=lambda p: (p[0], p[1], _value_rank(p[2])))
    finite = [value for _, _, value in points if not math.isnan(value)]
    return {"value": latest[2], "min": min(finite, default=None), "max": max(finite, default=None)}


def as_evaluated(run: dict) -> dict:
    """The run as the reference evaluator takes it."""
    return {
        **run,
        "metrics": {key: summary_of(points) for key, points in run["points"].items()},
        "datasets": [
            {"name": name, "digest": digest, "tags": [{"key": "mlflow.data.context", "value": context}]}
            for name, digest, context in run["datasets"]
        ],
    }


async def load(pool: asyncpg.Pool, runs: list[dict]) -> None:
    """Replace the database's runs with ``runs``: attributes directly, the rest through the writer."""
    await pool.execute("TRUNCATE runs, metric_chunks, metric_summaries, params, run_tags, run_dataset_inputs")
    await pool.executemany(
        "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time, artifact_uri)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (r["run_id"], r["experiment_id"], r["name"], r["user_id"], r["status"], r["start_time"],
             r["end_time"], r["artifact_uri"])
            for r in runs
        ],
    )
    # Two flushes: the first points of each key, then the rest, so summaries are merged in SQL too.
    writer = BatchWriter(pool)
    for half in (0, 1):
        writes = []
        for run in runs:
            points = [
                MetricPoint(key, value, timestamp, step)
                for key, key_points in run["points"].items()
                for index, (step, timestamp, value) in enumerate(key_points)
                if (index > 0) == bool(half)
            ]
            params = [KeyValue(k, v) for k, v in run["params"].items()] if half == 0 else []
            tags = [KeyValue(k, v) for k, v in run["tags"].items()] if half == 1 else []
            writes.append(RunWrite(run["run_id"], metrics=points, params=params, tags=tags))
        outcomes = await writer.write_batch(writes)
        assert outcomes == [None] * len(writes)
    await pool.executemany(
        "INSERT INTO run_dataset_inputs (run_id, name, digest, source_type, source, tags, position)"
        " VALUES ($1, $2, $3, 'local', 'file:///d', $4::jsonb, $5)",
        [
            (r["run_id"], name, digest, json.dumps([{"key": "mlflow.data.context", "value": context}]), position)
            for r in runs
            for position, (name, digest, context) in enumerate(r["datasets"])
        ],
    )
    await pool.execute(
        "UPDATE runs SET lifecycle_stage = 'deleted' WHERE run_id = ANY($1::uuid[])",
        [r["run_id"] for r in runs if r["lifecycle_stage"] == "deleted"],
    )


# ---------------------------------------------------------------------------
# Searches, written as a user would type them


def quoted_key(draw, key: str) -> str:
    choices = ["`" + key + "`", '"' + key + '"']
    if _BARE_KEY.fullmatch(key):
        choices.append(key)
    return draw(st.sampled_from(choices))


def number_text(value: float | int | str) -> str:
    return value if isinstance(value, str) else repr(value).replace("e+", "e")


def string_text(draw, value: str) -> str:
    # MLflow takes a quoted value's text between the quotes as is (no unescaping).
    quote = draw(st.sampled_from([q for q in ("'", '"') if q not in value]))
    return quote + value + quote


@st.composite
def filter_clauses(draw, run_ids: list[str]):
    kind = draw(st.sampled_from(["metric", "keyed", "keyed", "attribute", "run_id", "time", "dataset", "name_tag"]))
    if kind == "metric":
        prefix = draw(st.sampled_from(["metrics", "metric"]))
        operand = f"{prefix}.{quoted_key(draw, draw(st.sampled_from(METRIC_KEYS)))}"
        aggregate = draw(st.sampled_from([None, "MIN", "MAX", "LATEST", "min", "max"]))
        if aggregate:
            operand = f"{aggregate}({operand})"
        comparator = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        return f"{operand} {comparator} {number_text(draw(st.sampled_from(NUMBER_LITERALS)))}"
    if kind == "keyed":
        prefix = draw(st.sampled_from(["params", "param", "parameter", "parameters", "tags", "tag"]))
        operand = f"{prefix}.{quoted_key(draw, draw(st.sampled_from(KEYED_KEYS)))}"
        comparator = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "like", "IS NULL", "IS NOT NULL"]))
        if comparator.startswith("IS"):
            return f"{operand} {comparator}"
        pool = LIKE_PATTERNS + TEXT_VALUES if "LIKE" in comparator.upper() else TEXT_VALUES
        return f"{operand} {comparator} {string_text(draw, draw(st.sampled_from(pool)))}"
    if kind == "attribute":
        prefix = draw(st.sampled_from(["attributes", "attribute", "attr", "run"]))
        key = draw(st.sampled_from(["run_name", "`run name`", "status", "user_id", "artifact_uri"]))
        comparator = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"]))
        pool = NAMES + STATUSES + USERS + LIKE_PATTERNS + ["s3://b/%", "%1"]
        return f"{prefix}.{key} {comparator} {string_text(draw, draw(st.sampled_from(pool)))}"
    if kind == "run_id":
        ids = [*run_ids, "0" * 32, "not-a-run", "' OR 1=1 --"]
        comparator = draw(st.sampled_from(["=", "!=", "IN", "NOT IN", "LIKE", "ILIKE"]))
        if comparator in ("IN", "NOT IN"):
            chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3))
            return f"attributes.run_id {comparator} (" + ", ".join(string_text(draw, i) for i in chosen) + ")"
        if comparator in ("LIKE", "ILIKE"):
            chosen = draw(st.sampled_from([i[:3] + "%" for i in run_ids] + ["%", "%A%"]))
            return f"attributes.run_id {comparator} '{chosen}'"
        return f"attributes.run_id {comparator} {string_text(draw, draw(st.sampled_from(ids)))}"
    if kind == "time":
        key = draw(st.sampled_from(["start_time", "end_time", "created", "Created"]))
        comparator = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        literal = draw(st.sampled_from(["0", "5", "7", "10", "-1", "4.5", "5.0", "1e1", "99999999999999999999"]))
        return f"attributes.{key} {comparator} {literal}"
    if kind == "dataset":
        key = draw(st.sampled_from(["name", "digest", "context"]))
        comparator = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]))
        pool = {"name": DATASET_NAMES, "digest": DATASET_DIGESTS, "context": CONTEXTS}[key] + ["%a%", "x"]
        if comparator in ("IN", "NOT IN"):
            chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2))
            return f"datasets.{key} {comparator} (" + ", ".join(f"'{v}'" for v in chosen) + ")"
        return f"datasets.{key} {comparator} '{draw(st.sampled_from(pool))}'"
    comparator = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"]))
    return f"tags.`mlflow.runName` {comparator} {string_text(draw, draw(st.sampled_from(NAMES + LIKE_PATTERNS)))}"


@st.composite
def order_by_clauses(draw):
    kind = draw(st.sampled_from(["metric", "param", "tag", "attribute", "name_tag"]))
    if kind == "metric":
        operand = f"metrics.{quoted_key(draw, draw(st.sampled_from(METRIC_KEYS)))}"
        aggregate = draw(st.sampled_from([None, "MIN", "MAX"]))
        if aggregate:
            operand = f"{aggregate}({operand})"
    elif kind in ("param", "tag"):
        operand = f"{kind}s.{quoted_key(draw, draw(st.sampled_from(KEYED_KEYS)))}"
    elif kind == "attribute":
        operand = "attributes." + draw(
            st.sampled_from(["start_time", "end_time", "run_name", "status", "user_id", "run_id", "created"])
        )
    else:
        operand = "tags.`mlflow.runName`"
    direction = draw(st.sampled_from(["", " ASC", " DESC", " asc", " desc"]))
    return operand + direction


def _parses(order_by: list[str]) -> bool:
    # MLflow rejects an order_by that names one field twice.
    try:
        parse_run_order_by(order_by)
    except InvalidParameter:
        return False
    return True


@st.composite
def leading_metric_search(draw):
    """A filter clause and a first order key on one metric summary (the compiler's inner-join path)."""
    key = quoted_key(draw, draw(st.sampled_from(METRIC_KEYS)))
    aggregate = draw(st.sampled_from([None, "MIN", "MAX"]))
    operand = f"{aggregate}(metrics.{key})" if aggregate else f"metrics.{key}"
    comparator = draw(st.sampled_from(["=", "<", "<=", ">", ">=", "!="]))
    clause = f"{operand} {comparator} {number_text(draw(st.sampled_from(NUMBER_LITERALS)))}"
    return clause, operand + draw(st.sampled_from(["", " DESC"]))


def stored_keyed_values(runs: list[dict]) -> list[tuple[str, str, str]]:
    """(params or tags, key, value) of every param and tag the data set stores."""
    return sorted(
        (kind, key, value) for run in runs for kind in ("params", "tags") for key, value in run[kind].items()
    )


@st.composite
def searches(draw, run_ids: list[str], keyed_values: list[tuple[str, str, str]]):
    clauses = draw(st.lists(filter_clauses(run_ids), max_size=3))
    if keyed_values and draw(st.booleans()):
        # An equality some run matches: the compiler may read the runs from its rows.
        kind, key, value = draw(st.sampled_from(keyed_values))
        clause = f"{kind}.{quoted_key(draw, key)} = {string_text(draw, value)}"
        clauses.insert(draw(st.integers(0, len(clauses))), clause)
    order_by = draw(st.lists(order_by_clauses(), max_size=2).filter(_parses))
    if draw(st.booleans()):
        clause, leading = draw(leading_metric_search())
        clauses.insert(draw(st.integers(0, len(clauses))), clause)
        order_by = [leading, *order_by]
        if not _parses(order_by):
            order_by = [leading]
    joiner = draw(st.sampled_from([" AND ", " and "]))
    return {
        "filter_string": joiner.join(clauses) or None,
        "order_by": order_by or None,
        "run_view_type": draw(st.sampled_from(["ACTIVE_ONLY", "DELETED_ONLY", "ALL"])),
        "page_size": draw(st.integers(1, 4)),
    }


# ---------------------------------------------------------------------------
# The test


@pytest.fixture(scope="module")
def database(postgres):
    """One database and its own event loop for every example of the module."""
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(postgres.create_database())

    async def open_pool():
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await migrate(conn)
        return pool

    pool = loop.run_until_complete(open_pool())
    yield loop, pool
    loop.run_until_complete(pool.close())
    loop.close()


async def paged_search(pool, search: dict) -> list[list[str]]:
    """Every page of a search, each a list of run ids."""
    pages: list[list[str]] = []
    token = None
    while True:
        query = compile_run_search(
            experiment_ids=[EXPERIMENT],
            filter_string=search["filter_string"],
            run_view_type=search["run_view_type"],
            order_by=search["order_by"],
            max_results=search["page_size"],
            page_token=token,
        )
        async with pool.acquire() as conn:
            rows = await fetch_page(conn, query)
        pages.append([row["run_id"].hex for row in rows[: search["page_size"]]])
        token = next_run_page_token(query, rows, search["page_size"])
        if token is None:
            return pages
        assert len(pages) <= 20, "paging does not end"


# No shrinking: each step reloads the database, so shrinking a failure would
# outlast the test's timeout; the failing data set and searches are printed as drawn.
@settings(max_examples=60, deadline=None, phases=[Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compiled_search_agrees_with_the_evaluator(database, data):
    loop, pool = database
    runs = data.draw(data_sets(), label="runs")
    run_ids = [run["run_id"] for run in runs]
    keyed_values = stored_keyed_values(runs)
    cases = data.draw(st.lists(searches(run_ids, keyed_values), min_size=1, max_size=6), label="searches")
    loop.run_until_complete(load(pool, runs))
    in_experiment = [as_evaluated(run) for run in runs if run["experiment_id"] == EXPERIMENT]
    for search in cases:
        expected = [
            run["run_id"]
            for run in evaluate.search(
                in_experiment,
                filter_string=search["filter_string"],
                run_view_type=search["run_view_type"],
                order_by=search["order_by"],
            )
        ]
        pages = loop.run_until_complete(paged_search(pool, search))
        size = search["page_size"]
        event(f"matches: {min(len(expected), 3)}")
        assert [run_id for page in pages for run_id in page] == expected, search
        assert pages == [expected[i : i + size] for i in range(0, len(expected), size)] or (
            expected == [] and pages == [[]]
        ), search
    tables = loop.run_until_complete(pool.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'runs'"))
    assert tables == 1


def test_export_pages_give_the_same_csv_as_one_page(database):
    """The CSV export read in pages of 2 equals the CSV read in one page."""
    loop, pool = database
    runs = [
        {
            "run_id": uuid.UUID(int=index + 1).hex, "experiment_id": EXPERIMENT, "name": f"run-{index}",
            "status": "FINISHED", "user_id": "alice", "artifact_uri": "", "lifecycle_stage": "active",
            "start_time": index % 3, "end_time": None,
            "points": {"loss": [(0, 0, 1.0 / (index + 1))]}, "params": {"p": f'v,"{index}"\n'},
            "tags": {}, "datasets": [],
        }
        for index in range(7)
    ]

    async def export(page_size):
        await load(pool, runs)
        chunks = [chunk async for chunk in runs_csv(
            pool, experiment_ids=[EXPERIMENT], order_by=["params.p DESC"], page_size=page_size
        )]
        return chunks

    paged, whole = loop.run_until_complete(export(2)), loop.run_until_complete(export(1000))
    assert len(paged) == 1 + 4 and len(whole) == 1 + 1
    assert "".join(paged) == "".join(whole)
    lines = "".join(whole).split("\r\n")
    assert lines[0] == "Run ID,Name,Source Type,Source Name,User,Status,p,loss"
    assert lines[1] == f'{uuid.UUID(int=7).hex},run-6,,,alice,FINISHED,"v,""6""\n",{1 / 7!r}'


# The hostile text is found as data by these.
MATCHING_HOSTILE_FILTERS = [
    "params.p = \"a'; DROP TABLE runs; --\"",
    "attributes.run_name = \"x'; DROP TABLE runs; --\" AND tags.p LIKE '%;%'",
]
HOSTILE_FILTERS = [
    "params.`p'; DROP TABLE runs; --` = 'a'",
    'tags."t\\"; DELETE FROM params; --" != \'x\'',
    "params.p = 'a''; DROP TABLE runs; --'",
    "params.p LIKE '%'' OR ''1''=''1'",
    "params.p = \"'); TRUNCATE metric_summaries; --\"",
    "metrics.`loss; SELECT pg_sleep(10)` > 0",
    "attributes.run_name = 'x\\'; DROP TABLE runs; --'",
    "attributes.run_id IN ('a'')--', \"b\\\")\")",
    "datasets.name = '$1::text'",
    "params.`%` LIKE '%'",
    "params.`_` = 'a'",
    "tags.p ILIKE '\\%%'",
    *MATCHING_HOSTILE_FILTERS,
]


@pytest.mark.parametrize("filter_string", HOSTILE_FILTERS)
def test_injection_attempts_are_inert(database, filter_string):
    """Hostile keys and values are plain data: the answer is the evaluator's, every table stays intact."""
    loop, pool = database
    runs = [
        {
            "run_id": uuid.UUID(int=index + 1).hex, "experiment_id": EXPERIMENT, "name": "x'; DROP TABLE runs; --",
            "status": "RUNNING", "user_id": "", "artifact_uri": "", "lifecycle_stage": "active",
            "start_time": index, "end_time": None, "points": {"loss": [(0, 0, 1.0)]},
            "params": {"p": value}, "tags": {"p": value}, "datasets": [],
        }
        for index, value in enumerate(["a", "%x", "a'; DROP TABLE runs; --", "'); TRUNCATE metric_summaries; --"])
    ]
    loop.run_until_complete(load(pool, runs))
    search = {"filter_string": filter_string, "order_by": None, "run_view_type": "ALL", "page_size": 3}
    found = [run_id for page in loop.run_until_complete(paged_search(pool, search)) for run_id in page]
    expected = [r["run_id"] for r in evaluate.search([as_evaluated(r) for r in runs], filter_string=filter_string,
                                                     run_view_type="ALL")]
    assert found == expected
    if filter_string in MATCHING_HOSTILE_FILTERS:
        assert found
    counts = loop.run_until_complete(
        pool.fetchrow(
            "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM params) AS params,"
            " (SELECT count(*) FROM metric_summaries) AS summaries"
        )
    )
    assert tuple(counts) == (4, 4, 4)


@pytest.mark.parametrize("long_key", ["p", "other"])
def test_values_longer_than_the_indexed_prefix(database, long_key):
    """Long, incompressible param and tag values store, filter and sort by the whole value.

    The search indexes hold a 400-character prefix; values sharing it must still
    sort by what follows, page by page, whether the long value is on the ordered
    key (the exact sort) or on another key (the index-ordered one).
    """
    loop, pool = database
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + " \u00e9\u4e2d\U0001f600"
    shared = "".join(rng.choice(alphabet) for _ in range(400))
    values = [shared + "".join(rng.choice(alphabet) for _ in range(5600)) for _ in range(4)]
    values += [shared, shared[:399], "a", "zz"]
    runs = [
        {
            "run_id": uuid.UUID(int=index + 1).hex, "experiment_id": EXPERIMENT, "name": f"run-{index}",
            "status": "FINISHED", "user_id": "", "artifact_uri": "", "lifecycle_stage": "active",
            "start_time": index % 3, "end_time": None, "points": {},
            "params": {long_key: value, "p" if long_key == "other" else "q": f"v{index % 4}"},
            "tags": {long_key: value}, "datasets": [],
        }
        for index, value in enumerate(values)
    ]
    loop.run_until_complete(load(pool, runs))
    evaluated = [as_evaluated(r) for r in runs]
    # (filter, order_by, how many runs match): the LIKE pattern matches the 4
    # long values, the prefix itself and the prefix less one character.
    searches = [
        (None, ["params.p"], 8),
        (None, ["params.p DESC"], 8),
        (None, [f"tags.{long_key} DESC"], 8),
        (f"params.{long_key} = '{values[2]}'", ["params.p"], 1),
        (f"tags.{long_key} LIKE '{shared[:10]}%'", [f"tags.{long_key}"], 6),
    ]
    for filter_string, order_by, count in searches:
        search = {"filter_string": filter_string, "order_by": order_by, "run_view_type": "ALL", "page_size": 3}
        found = [run_id for page in loop.run_until_complete(paged_search(pool, search)) for run_id in page]
        expected = [
            r["run_id"]
            for r in evaluate.search(evaluated, filter_string=filter_string, run_view_type="ALL", order_by=order_by)
        ]
        assert found == expected, (filter_string, order_by)
        assert len(found) == count, (filter_string, order_by)


def test_patterns_matched_on_the_indexed_prefix_match_as_on_the_whole_value(database):
    """A LIKE/ILIKE pattern that looks only at a value's first characters is matched on
    the stored 400-character prefix; it must find exactly the runs whose whole value
    matches, at the prefix's edge and for ILIKE's case folding outside ASCII."""
    loop, pool = database
    experiment = EXPERIMENT
    values = ["\u00c9clair", "\u00e9clair", "x" * 400 + "tail", "x" * 400, "x" * 399, "ab%c", "AB_cd", "abc"]
    runs = [
        {
            "run_id": uuid.UUID(int=0x7000 + index).hex, "experiment_id": experiment, "name": f"run-{index}",
            "status": "FINISHED", "user_id": "", "artifact_uri": "", "lifecycle_stage": "active",
            "start_time": index, "end_time": None, "points": {},
            "params": {"w": value}, "tags": {"w": value}, "datasets": [],
        }
        for index, value in enumerate(values)
    ]
    loop.run_until_complete(load(pool, runs))
    patterns = ["\u00e9%", "\u00c9%", "x" * 400, "x" * 399 + "%", "x" * 400 + "%", "x" * 399, "ab\\%%", "a_%",
                "AB_c", "abc", "%"]
    for entity, table in (("params", "params"), ("tags", "run_tags")):
        for comparator in ("LIKE", "ILIKE"):
            for pattern in patterns:
                filter_string = f"{entity}.w {comparator} '{pattern}'"
                search = {"filter_string": filter_string, "order_by": None, "run_view_type": "ALL", "page_size": 3}
                found = [run_id for page in loop.run_until_complete(paged_search(pool, search)) for run_id in page]
                rows = loop.run_until_complete(pool.fetch(
                    f"SELECT run_id FROM {table} WHERE experiment_id = $1 AND key = 'w' AND value {comparator} $2"
                    " ORDER BY start_time DESC", experiment, pattern,
                ))
                assert found == [row["run_id"].hex for row in rows], filter_string
