"""The SQL compiler: placeholders only, values never in the text, keyset page tokens."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest

from gateway.errors import InvalidParameter
from gateway.search import runs, statements
from gateway.search import (
    CompiledQuery,
    compile_experiment_search,
    compile_run_search,
    next_experiment_page_token,
    next_run_page_token,
)

RUN_ID = "0123456789abcdef0123456789abcdef"
OTHER_RUN_ID = "fedcba9876543210fedcba9876543210"


def run_search(filter_string=None, order_by=None, *, run_view_type="ACTIVE_ONLY", max_results=10, page_token=None,
               experiment_ids=(1,)):
    return compile_run_search(
        experiment_ids=list(experiment_ids),
        filter_string=filter_string,
        run_view_type=run_view_type,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
    )


def experiment_search(filter_string=None, order_by=None, *, view_type="ACTIVE_ONLY", max_results=10, page_token=None):
    return compile_experiment_search(
        filter_string=filter_string,
        view_type=view_type,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
    )


def parts_of(query: CompiledQuery) -> list[CompiledQuery]:
    """The statement and those that follow it."""
    parts = []
    while query is not None:
        parts.append(query)
        query = query.then
    return parts


_PLACEHOLDER = re.compile(r"\$(\d+)::([a-z ]+(?:\[\])?)")


def assert_only_placeholders(query: CompiledQuery) -> None:
    """Every ``$`` starts a cast placeholder, and ``$1..$n`` are exactly the args."""
    assert query.sql.count("$") == len(_PLACEHOLDER.findall(query.sql))
    used = {int(number) for number, _ in _PLACEHOLDER.findall(query.sql)}
    assert used == set(range(1, len(query.args) + 1))


# A mix of every clause and order key kind.
EVERYTHING = (
    "metrics.loss < 0.5 AND MIN(metrics.acc) != 1 AND MAX(metrics.`a b`) >= 2 AND params.lr = '0.1' "
    "AND params.opt LIKE 'ad%' AND tags.team ILIKE 'A%' AND tags.`mlflow.runName` = 'r' AND tags.t IS NULL "
    "AND params.p IS NOT NULL AND attributes.run_id IN ('" + RUN_ID + "', 'zz') AND run_id NOT IN ('" + RUN_ID + "') "
    "AND run_id != '" + RUN_ID + "' AND run_id LIKE '01%' AND status = 'FINISHED' AND user_id != 'bob' "
    "AND artifact_uri LIKE 's3:%' AND run_name ILIKE 'x%' AND start_time > 5 AND end_time <= 1.5 AND created >= 1 "
    "AND dataset.name = 'd' AND dataset.digest IN ('a', 'b') AND dataset.context NOT IN ('eval') "
    "AND dataset.context LIKE 'tr%'"
)
EVERY_ORDER = [
    "metrics.loss DESC", "MIN(metrics.loss)", "params.lr", "tags.t DESC", "tags.`mlflow.runName`",
    "attributes.end_time", "status DESC", "run_name", "user_id", "artifact_uri", "attributes.run_id DESC",
]


@pytest.mark.parametrize(
    ("filter_string", "order_by"),
    [
        (None, None),
        (EVERYTHING, None),
        (EVERYTHING, EVERY_ORDER),
        (None, ["created DESC", "metrics.x"]),
        ("run_id = 'not-hex' AND run_id IN ('zz')", None),
        ("start_time > 99999999999999999999 AND end_time < -99999999999999999999", None),
    ],
)
def test_run_search_uses_only_placeholders(filter_string, order_by):
    query = run_search(filter_string, order_by)
    while query is not None:
        assert_only_placeholders(query)
        query = query.then


def test_experiment_search_uses_only_placeholders():
    query = experiment_search(
        "name LIKE 'a%' AND tags.t = 'x' AND tags.u IS NULL AND experiment_id IN ('1', '2') "
        "AND creation_time > 5 AND last_update_time != 99999999999999999999",
        ["name DESC", "last_update_time"],
    )
    assert_only_placeholders(query)


INJECTIONS = [
    "x'; DROP TABLE runs; --",
    'x"; DROP TABLE runs; --',
    "$1",
    "') OR TRUE OR ('",
    "\\'; SELECT pg_sleep(10); --",
]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_values_and_keys_never_reach_the_sql_text(injection):
    quoted_value = f"'{injection}'" if '"' in injection else f'"{injection}"'
    backtick_key = "`" + injection + "`"
    filters = [
        f"params.{backtick_key} = 'v'",
        f"tags.{backtick_key} LIKE 'v%'",
        f"metrics.{backtick_key} > 1",
        f"MIN(metrics.{backtick_key}) > 1",
        f"params.a = {quoted_value}",
        f"tags.a != {quoted_value}",
        f"attributes.status = {quoted_value}",
        f"attributes.run_id = {quoted_value}",
        f"attributes.run_id IN ({quoted_value})",
        f"dataset.name = {quoted_value}",
        f"dataset.context IN ({quoted_value})",
    ]
    for filter_string in filters:
        query = run_search(filter_string, [f"params.{backtick_key} DESC", f"metrics.{backtick_key}"])
        assert "DROP" not in query.sql and "pg_sleep" not in query.sql and "OR TRUE" not in query.sql
        assert_only_placeholders(query)
    query = run_search(f"params.{backtick_key} = 'v' AND tags.t = {quoted_value}")
    assert query.args.count(injection) == 2
    query = experiment_search(f"name = {quoted_value} AND tags.{backtick_key} = 'v'")
    assert "DROP" not in query.sql and "pg_sleep" not in query.sql and "OR TRUE" not in query.sql
    assert injection in query.args


def test_same_shape_gives_the_same_text():
    """Only the shape of a search decides the statement text (prepared statements are reused).

    One experiment or several is part of the shape (an equality or = ANY).
    """
    first = run_search("metrics.a > 1 AND params.b = 'x'", ["tags.c DESC"], max_results=5, experiment_ids=(1, 2))
    second = run_search("metrics.zz > -7 AND params.q = 'y'", ["tags.d DESC"], max_results=500, experiment_ids=(3, 4))
    assert first.sql == second.sql
    assert first.args != second.args


def test_one_experiment_is_an_equality_so_an_index_can_serve_the_order():
    query = run_search(None, None, max_results=100, experiment_ids=(3, 3))
    assert "WHERE r.experiment_id = $1::bigint\n" in query.sql
    assert query.args == [3, 101]


def test_run_search_statement():
    query = run_search(None, None, max_results=100, experiment_ids=(3, 4))
    assert query.sql.startswith("SELECT r.run_id,")
    assert "FROM runs r" in query.sql
    assert "r.experiment_id = ANY($1::bigint[])" in query.sql
    assert "r.lifecycle_stage = 'active'" in query.sql
    assert query.sql.endswith("LIMIT $2::bigint")
    assert query.args == [[3, 4], 101]
    # MLflow's default order: start_time DESC (missing last), then run_id.
    assert "ORDER BY sort_0_rank, sort_0 DESC, r.run_id" in query.sql
    assert query.sort_columns == ["sort_0_rank", "sort_0"]


@pytest.mark.parametrize(
    ("view_type", "condition"),
    [
        ("ACTIVE_ONLY", "r.lifecycle_stage = 'active'"),
        ("DELETED_ONLY", "r.lifecycle_stage = 'deleted'"),
        ("ALL", "r.lifecycle_stage IN ('active', 'deleted')"),
        (None, "r.lifecycle_stage = 'active'"),
        (1, "r.lifecycle_stage = 'active'"),
        (2, "r.lifecycle_stage = 'deleted'"),
        (3, "r.lifecycle_stage IN ('active', 'deleted')"),
    ],
)
def test_view_types(view_type, condition):
    assert condition in run_search(run_view_type=view_type).sql
    assert condition.replace("r.", "e.") in experiment_search(view_type=view_type).sql


def test_bad_arguments():
    with pytest.raises(InvalidParameter, match="Invalid value 'SOME' for parameter 'run_view_type' supplied"):
        run_search(run_view_type="SOME")
    with pytest.raises(InvalidParameter, match="Invalid value 7 for parameter 'view_type' supplied"):
        experiment_search(view_type=7)
    with pytest.raises(InvalidParameter) as caught:
        run_search(max_results=50001)
    assert caught.value.message == (
        "Invalid value 50001 for parameter 'max_results' supplied. It must be at most 50000"
    )
    with pytest.raises(InvalidParameter) as caught:
        experiment_search(max_results=0)
    assert caught.value.message == (
        "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer"
    )
    with pytest.raises(InvalidParameter) as caught:
        run_search(experiment_ids=("abc",))
    assert caught.value.message == "Invalid experiment ID 'abc'. Experiment ID must be a valid integer."


def test_experiment_ids_beyond_bigint_are_dropped():
    assert run_search(experiment_ids=("1", 2**70)).args[0] == 1
    assert run_search(experiment_ids=("1", 2**70, 5)).args[0] == [1, 5]


def test_run_ids_that_are_not_hex_match_nothing_without_reaching_the_database():
    query = run_search(f"run_id = 'nothex' AND run_id != 'NOTHEX' AND run_id = '{RUN_ID.upper()}'")
    assert "FALSE\n" in query.sql and "TRUE\n" in query.sql
    assert query.args[0] == 1 and len(query.args) == 2
    query = run_search(f"run_id = '{RUN_ID}' AND run_id IN ('{OTHER_RUN_ID}', 'zz') AND run_id NOT IN ('zz')")
    assert query.args == [1, uuid.UUID(RUN_ID), [uuid.UUID(OTHER_RUN_ID)], 11]
    assert "r.run_id = $2::uuid" in query.sql
    assert "r.run_id = ANY($3::uuid[])" in query.sql
    # Every listed id is invalid: NOT IN holds for every run.
    assert "  AND TRUE" in query.sql
    query = run_search("run_id LIKE '01%'")
    assert "replace(r.run_id::text, '-', '') LIKE $2::text" in query.sql


def test_metric_comparisons_never_match_nan():
    query = run_search("metrics.a > 1 AND metrics.b != 2 AND MIN(metrics.c) <= 3 AND MAX(metrics.d) != 4")
    assert "s.value > $2::double precision AND s.value <> 'NaN'::double precision" in query.sql
    assert "(s.value <> $4::double precision OR s.value IS NULL)" in query.sql
    assert "s.min_value <= $6::double precision AND s.min_value <> 'NaN'::double precision" in query.sql
    assert "(s.max_value <> $8::double precision OR s.max_value IS NULL)" in query.sql


def test_run_name_tag_is_the_name_column():
    query = run_search("tags.`mlflow.runName` LIKE 'a%' AND tags.mlflow.runName IS NULL", ["tags.mlflow.runName"])
    assert "r.name LIKE $2::text" in query.sql
    assert "FALSE" in query.sql
    assert 'r.name COLLATE "C" AS sort_0' in query.sql


def test_order_by_start_time_drops_the_default_tiebreak():
    query = run_search(order_by=["attributes.start_time ASC"])
    assert "ORDER BY sort_0_rank, sort_0, r.run_id" in query.sql
    query = run_search(order_by=["metrics.m"])
    assert "ORDER BY sort_0_rank, sort_0, sort_1_rank, sort_1 DESC, r.run_id" in query.sql


@pytest.mark.parametrize(
    ("order_by", "column", "direction"),
    [
        (None, "r.start_time", " DESC"),
        (["attributes.end_time"], "r.end_time", ""),
        (["created DESC"], "r.start_time", " DESC"),
    ],
)
def test_a_first_key_on_a_time_splits_runs_with_and_without_one(order_by, column, direction):
    head = run_search(order_by=order_by, max_results=1)
    missing = head.then
    rank = f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END"
    # Each part reads its stretch of an index of runs, whose first columns are the rank and the time.
    assert f"{rank} = 0" in head.sql and "0 AS sort_0_rank" in head.sql
    assert f"{rank} = 1" in missing.sql and "1 AS sort_0_rank" in missing.sql and missing.then is None
    assert f"ORDER BY sort_0_rank, sort_0{direction}, " in head.sql and missing.keyset_columns == head.keyset_columns
    # A token from the head starts the head's index scan at its time; one from the missing part skips the head.
    in_head = fake_rows(head, 2, sort_0_rank=0, sort_0=7, run_id=uuid.UUID(RUN_ID))
    page = run_search(order_by=order_by, max_results=1, page_token=next_run_page_token(head, in_head, 1))
    assert f"{column} {'<' if direction else '>'}= $" in page.sql and page.then is not None
    in_missing = fake_rows(head, 2, sort_0_rank=1, sort_0=None, run_id=uuid.UUID(RUN_ID))
    page = run_search(order_by=order_by, max_results=1, page_token=next_run_page_token(head, in_missing, 1))
    assert f"{rank} = 1" in page.sql and page.then is None
    for part in (head, missing, page):
        assert_only_placeholders(part)


@pytest.mark.parametrize("order_by", [["attributes.run_name DESC"], ["tags.`mlflow.runName` DESC"]])
def test_a_first_key_on_the_run_name_leads_with_its_indexed_prefix(order_by):
    query = run_search(order_by=order_by, max_results=1)
    assert 'ORDER BY left(r.name, 200) COLLATE "C" DESC, sort_0 DESC, sort_1_rank' in query.sql
    rows = fake_rows(query, 2, sort_0="b", sort_1_rank=0, sort_1=5, run_id=uuid.UUID(RUN_ID))
    page = run_search(order_by=order_by, max_results=1, page_token=next_run_page_token(query, rows, 1))
    assert 'left(r.name, 200) COLLATE "C" <= left($2::text, 200) COLLATE "C"' in page.sql and page.args[1] == "b"
    assert_only_placeholders(page)
    # Only the first key: later ones sort by the name alone.
    later = run_search(order_by=["params.p", "attributes.run_name"])
    assert "left(r.name" not in later.sql and "left(r.name" not in later.then.sql


# ---------------------------------------------------------------------------
# Page tokens


def fake_rows(query: CompiledQuery, count: int, **values) -> list[dict]:
    """Rows shaped like the query's result, with the given keyset values."""
    row = {column: values.get(column, 0) for column in query.keyset_columns}
    return [dict(row) for _ in range(count)]


def test_no_token_on_the_last_page():
    query = run_search(max_results=3)
    assert next_run_page_token(query, fake_rows(query, 3, run_id=uuid.UUID(RUN_ID)), 3) is None
    assert next_run_page_token(query, [], 3) is None


def test_run_token_round_trip():
    order_by = ["metrics.loss DESC", "params.lr", "attributes.status"]
    query = run_search("metrics.acc < 1", order_by, max_results=2)
    assert query.keyset_columns == (
        "sort_0_rank", "sort_0", "sort_1_rank", "sort_1", "sort_2", "sort_3_rank", "sort_3", "run_id",
    )
    rows = fake_rows(query, 3, sort_0=0.25, sort_1_rank=1, sort_1=None, sort_2="FINISHED", sort_3=1700,
                     run_id=uuid.UUID(RUN_ID))
    rows[1]["run_id"] = uuid.UUID(OTHER_RUN_ID)
    token = next_run_page_token(query, rows, 2)
    assert isinstance(token, str) and re.fullmatch(r"[A-Za-z0-9_=-]+", token)

    next_page = run_search("metrics.acc < 1", order_by, max_results=50, page_token=token)
    assert_only_placeholders(next_page)
    # The keyset of rows[1] (the last row of the page) is bound, never inlined.
    assert uuid.UUID(OTHER_RUN_ID) in next_page.args
    assert "FINISHED" in next_page.args and 0.25 in next_page.args
    assert "FINISHED" not in next_page.sql
    assert next_page.sql.endswith(f"LIMIT ${len(next_page.args)}::bigint") and next_page.args[-1] == 51
    # The missing param (rank 1) is compared by rank only.
    assert "CASE WHEN o1.run_id IS NULL THEN 1 ELSE 0 END > $" in next_page.sql


def test_a_filter_on_the_leading_metric_turns_its_join_inner_and_drops_its_rank():
    query = run_search("metrics.loss < 1 AND metrics.loss >= 0 AND params.lr = 'x'", ["metrics.loss DESC"])
    assert query.keyset_columns == ("sort_0", "sort_1_rank", "sort_1", "run_id")
    assert "JOIN metric_summaries o0 ON o0.run_id = r.run_id AND o0.key = $" in query.sql
    assert "LEFT JOIN metric_summaries" not in query.sql
    # The two metric clauses are join conditions now; only the param clause stays an EXISTS.
    assert query.sql.count("EXISTS") == 1
    assert "ORDER BY sort_0 DESC, sort_1_rank, sort_1 DESC, r.run_id" in query.sql
    assert_only_placeholders(query)


@pytest.mark.parametrize(
    ("filter_string", "order_by", "table"),
    [
        ("metrics.loss != 1", ["metrics.loss"], "metric_summaries"),  # NaN and missing values pass !=
        ("MIN(metrics.loss) < 1", ["metrics.loss"], "metric_summaries"),  # another summary of the key
        ("metrics.acc < 1", ["MAX(metrics.loss) DESC"], "metric_summaries"),
        ("metrics.loss < 1", ["params.p", "metrics.loss"], "params"),
        (None, ["tags.t DESC"], "run_tags"),
    ],
)
def test_a_first_key_runs_may_lack_splits_the_search_into_parts(filter_string, order_by, table):
    head = run_search(filter_string, order_by)
    middle = head.then
    missing = middle.then
    # The head: runs with a value, an inner join whose rank is the constant 0.
    assert f"\nJOIN {table} o0 ON o0.run_id = r.run_id" in head.sql
    assert f"LEFT JOIN {table} o0 " not in head.sql
    assert "0 AS sort_0_rank" in head.sql
    # Then the runs with a NaN value (metrics) or with a value too long for the
    # head's index (params and tags): inner joins again.
    assert f"\nJOIN {table} o0 ON o0.run_id = r.run_id" in middle.sql
    if table == "metric_summaries":
        assert "1 AS sort_0_rank" in middle.sql and "NULL::double precision AS sort_0" in middle.sql
        assert "'NaN'::double precision" in middle.sql
    else:
        assert "0 AS sort_0_rank" in middle.sql and 'o0.value COLLATE "C" AS sort_0' in middle.sql
        assert "AND length(l.value) > 400)" in middle.sql
    # Last the runs without the key, in the default order; nothing follows.
    assert f"NOT EXISTS (SELECT 1 FROM {table} o0 WHERE o0.run_id = r.run_id AND o0.key = $" in missing.sql
    assert ("2" if table == "metric_summaries" else "1") + " AS sort_0_rank" in missing.sql
    assert "r.start_time AS sort_" in missing.sql and f"JOIN {table} o0 " not in missing.sql
    assert missing.then is None
    # One keyset layout and fingerprint, so a token works on every part.
    for part in (middle, missing):
        assert part.keyset_columns == head.keyset_columns and "sort_0_rank" in head.keyset_columns
        assert part.fingerprint == head.fingerprint and part.row_limit == head.row_limit == 11
        assert_only_placeholders(part)
    assert_only_placeholders(head)


def test_keyed_head_follows_its_index_for_the_default_tiebreak():
    head = run_search("params.a = 'x'", ["params.p DESC"])
    assert "AND o0.experiment_id = r.experiment_id AND o0.key = $" in head.sql
    # The index holds a prefix of each value: the head serves only while no value is longer ...
    assert "o0.value_prefix AS sort_0" in head.sql
    assert "NOT EXISTS (SELECT 1 FROM params l WHERE l.experiment_id = $" in head.sql
    assert "AND length(l.value) > 400)" in head.sql
    # ... and the long part sorts the runs with a value otherwise.
    assert "\n  AND EXISTS (SELECT 1 FROM params l WHERE l.experiment_id = $" in head.then.sql
    # A filter's equality goes through the same prefix; a value as long as the
    # prefix also compares the whole value.
    assert "r.value_prefix = $" in head.sql
    long_value = run_search(f"params.a = '{'x' * 400}'", ["params.p DESC"])
    assert "r.value_prefix = left($" in long_value.sql and "AND r.value = $" in long_value.sql
    as_exists = run_search(f"params.a = '{'x' * 400}' AND attributes.status = 'RUNNING'", ["params.p DESC"])
    assert "k.value_prefix = left($" in as_exists.sql and "AND k.value = $" in as_exists.sql
    assert "CASE WHEN o0.start_time IS NULL THEN 1 ELSE 0 END AS sort_1_rank" in head.sql
    assert "ORDER BY sort_0_rank, sort_0 DESC, sort_1_rank, sort_1 DESC, r.run_id" in head.sql


@pytest.mark.parametrize(
    ("filter_string", "order_by", "view_type", "table"),
    [
        ("params.a = 'x'", None, "ACTIVE_ONLY", "params"),
        ("tags.t = 'x' AND params.a = 'y'", ["metrics.m DESC", "params.p"], "ACTIVE_ONLY", "run_tags"),
        ("metrics.m > 1 AND tags.t = 'x'", ["attributes.start_time"], "ALL", "run_tags"),
        ("params.a != 'x' AND params.b = 'y' AND datasets.name = 'd'", ["tags.t"], "ACTIVE_ONLY", "params"),
        # Without an equality, LIKE with a prefix the index holds anchors the search.
        ("params.a LIKE 'x%' AND tags.t != 'y'", None, "ACTIVE_ONLY", "params"),
        ("tags.t != 'y' AND tags.u LIKE 'x_%'", ["metrics.m"], "ALL", "run_tags"),
        ("tags.u IS NOT NULL AND params.a LIKE 'x'", None, "ACTIVE_ONLY", "params"),
    ],
)
def test_an_equality_on_a_param_or_tag_is_where_the_runs_are_read(filter_string, order_by, view_type, table):
    for part in parts_of(run_search(filter_string, order_by, run_view_type=view_type)):
        assert f"\nFROM {table} r\n" in part.sql and "FROM runs r" not in part.sql
        assert part.sql.count("r.key = $") == 1
        # Deleted runs are skipped through their own index; with ALL nothing is skipped.
        skips = "NOT EXISTS (SELECT 1 FROM runs d WHERE d.run_id = r.run_id AND d.lifecycle_stage <> 'active')"
        assert (skips in part.sql) == (view_type == "ACTIVE_ONLY")
        assert "lifecycle_stage =" not in part.sql and "lifecycle_stage IN" not in part.sql
        assert_only_placeholders(part)


@pytest.mark.parametrize(
    ("filter_string", "order_by", "view_type"),
    [
        ("params.a = 'x'", None, "DELETED_ONLY"),
        ("params.a = 'x' AND attributes.status = 'RUNNING'", None, "ACTIVE_ONLY"),
        ("params.a = 'x'", ["attributes.run_name"], "ACTIVE_ONLY"),
        ("params.a = 'x'", ["attributes.end_time DESC"], "ALL"),
        ("tags.`mlflow.runName` = 'x'", None, "ACTIVE_ONLY"),
        ("tags.`mlflow.runName` LIKE 'x%'", None, "ACTIVE_ONLY"),
        ("params.a LIKE 'x%' AND attributes.user_id = 'u'", None, "ACTIVE_ONLY"),
        ("params.a != 'x' AND params.b IS NULL", None, "ACTIVE_ONLY"),
        # A pattern that needs the whole value, or no range of the index, stays an EXISTS.
        ("params.a LIKE '%x'", None, "ACTIVE_ONLY"),
        ("params.a LIKE '_x%'", None, "ACTIVE_ONLY"),
        ("tags.t ILIKE 'x%'", None, "ACTIVE_ONLY"),
        ("tags.t IS NOT NULL", None, "ACTIVE_ONLY"),
    ],
)
def test_a_search_that_reads_more_of_a_run_reads_runs(filter_string, order_by, view_type):
    for part in parts_of(run_search(filter_string, order_by, run_view_type=view_type)):
        assert "\nFROM runs r\n" in part.sql and "r.key" not in part.sql
        assert f"r.lifecycle_stage {statements.LIFECYCLE_CONDITION[view_type]}" in part.sql


def test_metric_head_keeps_numbers_only():
    head = run_search(None, ["MIN(metrics.m)"])
    assert "o0.min_value < 'NaN'::double precision" in head.sql
    # No min (only NaN points) ranks with NaN.
    assert "(o0.min_value IS NULL OR o0.min_value = 'NaN'::double precision)" in head.then.sql
    assert "o0.value = 'NaN'::double precision" in run_search(None, ["metrics.m"]).then.sql


def test_page_token_picks_the_part_its_cursor_is_in():
    first = run_search(None, ["params.p"], max_results=1)
    in_head = fake_rows(first, 2, sort_0_rank=0, sort_0="b", sort_1_rank=0, sort_1=5, run_id=uuid.UUID(RUN_ID))
    page = run_search(None, ["params.p"], max_results=1, page_token=next_run_page_token(first, in_head, 1))
    # Still in the head: the head goes on after the cursor, from an index bound;
    # the other parts follow it, after the same cursor (the long part holds the
    # runs with a value when one too long for the head's index appeared between the pages).
    assert "o0.value_prefix >= $" in page.sql and "b" in page.args
    assert "b" in page.then.args and page.then.then is not None
    in_missing = fake_rows(first, 2, sort_0_rank=1, sort_0=None, sort_1_rank=0, sort_1=5, run_id=uuid.UUID(RUN_ID))
    page = run_search(None, ["params.p"], max_results=1, page_token=next_run_page_token(first, in_missing, 1))
    # Past the runs with a value: only the runs without the key, after the cursor.
    assert "NOT EXISTS (SELECT 1 FROM params o0" in page.sql and page.then is None
    assert uuid.UUID(RUN_ID) in page.args

    first = run_search(None, ["metrics.m"], max_results=1)
    for rank, parts in ((1, 2), (2, 1)):
        rows = fake_rows(first, 2, sort_0_rank=rank, sort_0=None, sort_1_rank=0, sort_1=5, run_id=uuid.UUID(RUN_ID))
        page = run_search(None, ["metrics.m"], max_results=1, page_token=next_run_page_token(first, rows, 1))
        chain = []
        part = page
        while part is not None:
            chain.append(part.sql)
            part = part.then
        # Rank 1 (NaN): the NaN part, then the runs without the key; rank 2: only those.
        assert len(chain) == parts and f"{rank} AS sort_0_rank" in chain[0] and "2 AS sort_0_rank" in chain[-1]


def test_token_accepts_asyncpg_uuid_values():
    from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID

    query = run_search(max_results=1)
    rows = fake_rows(query, 2, sort_0=5, run_id=AsyncpgUUID(RUN_ID))
    token = next_run_page_token(query, rows, 1)
    assert uuid.UUID(RUN_ID) in run_search(max_results=1, page_token=token).args


@pytest.mark.parametrize(
    "changed",
    [
        {"filter_string": "metrics.loss < 2"},
        {"order_by": ["metrics.loss"]},
        {"run_view_type": "ALL"},
        {"experiment_ids": (2,)},
    ],
)
def test_token_of_another_search_is_rejected(changed):
    arguments = {"filter_string": "metrics.loss < 1", "order_by": ["metrics.loss DESC"], "run_view_type": "ACTIVE_ONLY",
                 "experiment_ids": (1,)}
    query = run_search(**arguments, max_results=1)
    token = next_run_page_token(query, fake_rows(query, 2, run_id=uuid.UUID(RUN_ID)), 1)
    run_search(**arguments, page_token=token)
    with pytest.raises(InvalidParameter) as caught:
        run_search(**{**arguments, **changed}, page_token=token)
    assert caught.value.message.startswith("Invalid page token, it belongs to a different search")
    # Page size may change between pages.
    run_search(**arguments, max_results=7, page_token=token)


def _token(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def test_garbage_tokens_are_rejected():
    query = run_search(max_results=1)
    good = next_run_page_token(query, fake_rows(query, 2, sort_0=5, run_id=uuid.UUID(RUN_ID)), 1)
    fingerprint = json.loads(base64.urlsafe_b64decode(good))["f"]
    garbage = [
        "abc",
        "!!!!",
        "é",
        base64.b64encode(b"\xff\xfe").decode(),
        base64.b64encode(b"not json").decode(),
        _token([1, 2]),
        _token({"f": fingerprint}),
        _token({"f": fingerprint, "k": [0, 5]}),  # too short
        _token({"f": fingerprint, "k": [3, 5, RUN_ID]}),  # rank out of range
        _token({"f": fingerprint, "k": [0, None, RUN_ID]}),  # rank 0 without a value
        _token({"f": fingerprint, "k": [1, 5, RUN_ID]}),  # a value with rank 1
        _token({"f": fingerprint, "k": [0, "5", RUN_ID]}),  # text for a bigint
        _token({"f": fingerprint, "k": [0, 2**63, RUN_ID]}),  # beyond bigint
        _token({"f": fingerprint, "k": [0, True, RUN_ID]}),
        _token({"f": fingerprint, "k": [0, 5, "not-a-run-id"]}),
        _token({"f": fingerprint, "k": [0, 5, RUN_ID.upper()[:31] + "g"]}),
        _token({"f": fingerprint, "k": [0, 5, None]}),
    ]
    for token in garbage:
        with pytest.raises(InvalidParameter) as caught:
            run_search(max_results=1, page_token=token)
        assert caught.value.message.startswith("Invalid page token, "), token
        assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert run_search(max_results=1, page_token=_token({"f": fingerprint, "k": [1, None, RUN_ID]})).args


def test_empty_token_is_the_first_page():
    assert run_search(page_token="").sql == run_search(page_token=None).sql


def test_text_keyset_values_stay_arguments():
    query = run_search(order_by=["params.p"], max_results=1)
    rows = fake_rows(query, 2, sort_0_rank=0, sort_0="x'; DROP TABLE runs; --", sort_1=1, run_id=uuid.UUID(RUN_ID))
    next_page = run_search(order_by=["params.p"], max_results=1, page_token=next_run_page_token(query, rows, 1))
    assert "DROP" not in next_page.sql
    assert "x'; DROP TABLE runs; --" in next_page.args


def test_float_keyset_values_survive_extremes():
    query = run_search(order_by=["metrics.m"], max_results=1)
    for value in (1.7976931348623157e308, -0.0, 5e-324, float("inf")):
        rows = fake_rows(query, 2, sort_0=value, sort_1=1, run_id=uuid.UUID(RUN_ID))
        next_page = run_search(order_by=["metrics.m"], max_results=1, page_token=next_run_page_token(query, rows, 1))
        assert value in next_page.args


# ---------------------------------------------------------------------------
# Experiments


def test_experiment_search_statement():
    query = experiment_search(max_results=20000)
    assert query.sql.startswith("SELECT e.experiment_id,")
    assert "FROM experiments e" in query.sql
    # MLflow's default order.
    assert "ORDER BY sort_0 DESC, e.experiment_id\n" in query.sql
    assert query.sort_columns == ["sort_0"]
    assert query.args == [20001]


def test_experiment_order_by_gets_mlflow_tiebreak():
    query = experiment_search(order_by=["name"])
    assert "ORDER BY sort_0, e.experiment_id DESC\n" in query.sql
    assert 'e.name COLLATE "C" AS sort_0' in query.sql
    query = experiment_search(order_by=["experiment_id", "name DESC"])
    assert "ORDER BY e.experiment_id, sort_1 DESC\n" in query.sql


def test_experiment_filters():
    query = experiment_search(
        "experiment_id IN ('1', '99999999999999999999') AND experiment_id != '99999999999999999999' "
        "AND name ILIKE 'a%' AND creation_time >= 5 AND tags.t IS NOT NULL AND tags.u != 'x'"
    )
    assert "e.experiment_id = ANY($1::bigint[])" in query.sql
    assert query.args[0] == [1]
    assert "  AND TRUE\n" in query.sql
    assert "e.name ILIKE $2::text" in query.sql
    assert "e.creation_time >= $3::bigint" in query.sql
    assert "EXISTS (SELECT 1 FROM experiment_tags k WHERE k.experiment_id = e.experiment_id AND k.key = $4::text)" in query.sql


def test_experiment_token_round_trip():
    query = experiment_search("name LIKE 'a%'", ["name"], max_results=2)
    assert query.keyset_columns == ("sort_0", "experiment_id")
    rows = [{"experiment_id": 4, "sort_0": "a1"}, {"experiment_id": 9, "sort_0": "a2"}, {"experiment_id": 1, "sort_0": "a3"}]
    token = next_experiment_page_token(query, rows, 2)
    assert next_experiment_page_token(query, rows, 3) is None
    next_page = experiment_search("name LIKE 'a%'", ["name"], max_results=2, page_token=token)
    assert_only_placeholders(next_page)
    assert next_page.args[1:3] == ["a2", 9]
    assert '(e.name COLLATE "C" > $2::text)' in next_page.sql
    assert '(e.name COLLATE "C" = $2::text AND e.experiment_id < $3::bigint)' in next_page.sql
    with pytest.raises(InvalidParameter, match="Invalid page token, it belongs to a different search"):
        experiment_search("name LIKE 'b%'", ["name"], page_token=token)
    with pytest.raises(InvalidParameter, match="Invalid page token"):
        run_search(page_token=token)


@pytest.mark.parametrize(
    ("pattern", "decided"),
    [
        ("abc%", True),
        ("a_c%%", True),
        ("%", True),
        (r"a\%b%", True),  # an escaped % is one character
        ("abc", True),  # no % and shorter than the prefix: a longer value cannot match
        ("x" * 400 + "%", True),
        ("x" * 399, True),
        ("x" * 400, False),  # a longer value's prefix would match where the value does not
        ("x" * 401 + "%", False),
        ("%abc", False),
        ("a%c", False),
        ("a%c%", False),
        ("abc\\", False),  # a lone trailing backslash is left to the database (no filter string holds one)
    ],
)
def test_a_pattern_is_matched_on_the_prefix_only_where_the_prefix_decides(pattern, decided):
    assert runs._decided_by_prefix(pattern) is decided
    if pattern.endswith("\\"):
        return
    for comparator in ("LIKE", "ILIKE"):
        as_exists = run_search(f"params.a {comparator} '{pattern}' AND attributes.status = 'RUNNING'", None)
        if not decided:
            assert f"k.value {comparator} $" in as_exists.sql and "value_prefix" not in as_exists.sql
        elif comparator == "LIKE":
            # The "C"-collated prefix: LIKE 'abc%' is a range of its index.
            assert "k.value_prefix LIKE $" in as_exists.sql
        else:
            # ILIKE lower-cases by the collation: the value's, not the prefix's "C".
            assert 'k.value_prefix COLLATE "default" ILIKE $' in as_exists.sql


def test_is_null_is_an_anti_join_against_the_keys_rows_of_the_experiments():
    one = run_search("params.a IS NULL", None)
    assert (
        "NOT EXISTS (SELECT 1 FROM (SELECT h.run_id FROM params h WHERE h.experiment_id = $2::bigint "
        "AND h.key = $3::text OFFSET 0) k WHERE k.run_id = r.run_id)"
    ) in one.sql
    assert one.args[:3] == [1, 1, "a"]
    several = run_search("tags.t IS NULL", None, experiment_ids=[1, 2])
    assert "FROM run_tags h WHERE h.experiment_id = ANY($" in several.sql
    assert_only_placeholders(one)
