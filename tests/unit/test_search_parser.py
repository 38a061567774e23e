"""The search grammar: what parses to what, and the messages for what does not.

Where MLflow rejects a filter too, the message is compared with the one MLflow
3's own parser and SQL store validation produce for the same input (MLflow
prints Python sets, so the order of a listed set is normalised first).
"""

from __future__ import annotations

import re
from unittest.mock import MagicMock

import pytest

from gateway.errors import InvalidParameter
from gateway.search import (
    Aggregate,
    Comparison,
    Entity,
    OrderKey,
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)

# ---------------------------------------------------------------------------
# MLflow as the reference


@pytest.fixture(scope="module")
def mlflow_reference():
    """MLflow's validation of a search, as its SQL store runs it (no database needed)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.sqlalchemy_store import (
        _get_orderby_clauses,
        _get_search_experiments_filter_clauses,
        _get_search_experiments_order_by_clauses,
        _get_sqlalchemy_filter_clauses,
    )
    from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils

    def run_search_error(filter_string=None, order_by=None):
        try:
            parsed = SearchUtils.parse_search_filter(filter_string)
            _get_orderby_clauses(order_by, MagicMock())
            _get_sqlalchemy_filter_clauses(parsed, MagicMock(), "postgresql")
        except MlflowException as error:
            return error.message
        return None

    def experiment_search_error(filter_string=None, order_by=None):
        try:
            parsed = SearchExperimentsUtils.parse_search_filter(filter_string)
            _get_search_experiments_filter_clauses(parsed, "postgresql")
            _get_search_experiments_order_by_clauses(order_by)
        except MlflowException as error:
            return error.message
        return None

    return run_search_error, experiment_search_error


_SET_LITERAL = re.compile(r"\{('[^']*'(?:, '[^']*')*)\}")


def normalise_sets(message: str) -> str:
    """Sort the items of every Python set literal in a message."""
    return _SET_LITERAL.sub(
        lambda found: "{" + ", ".join(sorted(found.group(1).split(", "))) + "}", message
    )


def run_filter_error(filter_string: str) -> str:
    with pytest.raises(InvalidParameter) as caught:
        parse_run_filter(filter_string)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    return caught.value.message


def experiment_filter_error(filter_string: str) -> str:
    with pytest.raises(InvalidParameter) as caught:
        parse_experiment_filter(filter_string)
    return caught.value.message


# ---------------------------------------------------------------------------
# Run filters that parse


def metric(key, comparator, value, aggregate=Aggregate.LATEST, position=0):
    return Comparison(Entity.METRIC, key, comparator, value, aggregate, position)


def keyed(entity, key, comparator, value, position=0):
    return Comparison(entity, key, comparator, value, None, position)


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        # entities and their aliases
        ("metrics.loss < 0.5", metric("loss", "<", 0.5)),
        ("metric.loss >= 1", metric("loss", ">=", 1.0)),
        ("params.lr = '0.1'", keyed(Entity.PARAM, "lr", "=", "0.1")),
        ("param.lr = '0.1'", keyed(Entity.PARAM, "lr", "=", "0.1")),
        ("parameter.lr = '0.1'", keyed(Entity.PARAM, "lr", "=", "0.1")),
        ("parameters.lr = '0.1'", keyed(Entity.PARAM, "lr", "=", "0.1")),
        ("tags.team != 'a'", keyed(Entity.TAG, "team", "!=", "a")),
        ("tag.team = 'a'", keyed(Entity.TAG, "team", "=", "a")),
        ("attributes.status = 'RUNNING'", keyed(Entity.ATTRIBUTE, "status", "=", "RUNNING")),
        ("attribute.status = 'RUNNING'", keyed(Entity.ATTRIBUTE, "status", "=", "RUNNING")),
        ("attr.status = 'RUNNING'", keyed(Entity.ATTRIBUTE, "status", "=", "RUNNING")),
        ("run.status = 'RUNNING'", keyed(Entity.ATTRIBUTE, "status", "=", "RUNNING")),
        ("status = 'RUNNING'", keyed(Entity.ATTRIBUTE, "status", "=", "RUNNING")),
        ("`metrics`.loss > 1", metric("loss", ">", 1.0)),
        ("dataset.name = 'd'", keyed(Entity.DATASET, "name", "=", "d")),
        ("datasets.digest != 'x'", keyed(Entity.DATASET, "digest", "!=", "x")),
        ("dataset.context = 'train'", keyed(Entity.DATASET, "context", "=", "train")),
        # quoted keys
        ("metrics.`my key` > 1", metric("my key", ">", 1.0)),
        ('metrics."my key" > 1', metric("my key", ">", 1.0)),
        ("metrics.'my key' > 1", metric("my key", ">", 1.0)),
        ("tags.`mlflow.runName` = 'x'", keyed(Entity.TAG, "mlflow.runName", "=", "x")),
        ('tags."mlflow.runName" = \'x\'', keyed(Entity.TAG, "mlflow.runName", "=", "x")),
        ("tags.mlflow.runName = 'x'", keyed(Entity.TAG, "mlflow.runName", "=", "x")),
        ("tags.`a'b` = 'x'", keyed(Entity.TAG, "a'b", "=", "x")),
        ('tags."a`b" = \'x\'', keyed(Entity.TAG, "a`b", "=", "x")),
        ("metrics.1key > 1", metric("1key", ">", 1.0)),
        # values
        ('params.a = "b"', keyed(Entity.PARAM, "a", "=", "b")),
        ("params.a = ''", keyed(Entity.PARAM, "a", "=", "")),
        ("params.a = 'a\"b'", keyed(Entity.PARAM, "a", "=", 'a"b')),
        ("params.a = \"a'b\"", keyed(Entity.PARAM, "a", "=", "a'b")),
        # MLflow keeps quoted text as written, escapes included.
        ("params.a = 'it''s'", keyed(Entity.PARAM, "a", "=", "it''s")),
        ("metrics.x = -1", metric("x", "=", -1.0)),
        ("metrics.x = 1e3", metric("x", "=", 1000.0)),
        ("metrics.x = 1.5e-3", metric("x", "=", 0.0015)),
        ("metrics.x = .5", metric("x", "=", 0.5)),
        ("metrics.x = 1.", metric("x", "=", 1.0)),
        ("metrics.x>1", metric("x", ">", 1.0)),
        # comparators, any case
        ("params.a like 'b%'", keyed(Entity.PARAM, "a", "LIKE", "b%")),
        ("params.a ILIKE 'b%'", keyed(Entity.PARAM, "a", "ILIKE", "b%")),
        ("params.a IS NULL", keyed(Entity.PARAM, "a", "IS NULL", None)),
        ("tags.a is not null", keyed(Entity.TAG, "a", "IS NOT NULL", None)),
        # attributes: aliases resolved, numbers keep their type
        ("attributes.created > 1", keyed(Entity.ATTRIBUTE, "start_time", ">", 1)),
        ("Created >= 1", keyed(Entity.ATTRIBUTE, "start_time", ">=", 1)),
        ("attributes.start_time > 1.5", keyed(Entity.ATTRIBUTE, "start_time", ">", 1.5)),
        ("end_time <= 10", keyed(Entity.ATTRIBUTE, "end_time", "<=", 10)),
        ("attributes.`Run name` = 'x'", keyed(Entity.ATTRIBUTE, "run_name", "=", "x")),
        ('"run name" = \'x\'', keyed(Entity.ATTRIBUTE, "run_name", "=", "x")),
        ("`Run Name` = 'x'", keyed(Entity.ATTRIBUTE, "run_name", "=", "x")),
        ("run_name ILIKE '%x%'", keyed(Entity.ATTRIBUTE, "run_name", "ILIKE", "%x%")),
        ("attributes.user_id LIKE 'a%'", keyed(Entity.ATTRIBUTE, "user_id", "LIKE", "a%")),
        ("attributes.artifact_uri = 's3://b'", keyed(Entity.ATTRIBUTE, "artifact_uri", "=", "s3://b")),
        ("attributes.run_id = 'abc'", keyed(Entity.ATTRIBUTE, "run_id", "=", "abc")),
        ("attributes.run_id IN ('a', 'b')", keyed(Entity.ATTRIBUTE, "run_id", "IN", ("a", "b"))),
        ("attributes.run_id in ('a',\"b\",)", keyed(Entity.ATTRIBUTE, "run_id", "IN", ("a", "b"))),
        ("attributes.run_id not in ('a')", keyed(Entity.ATTRIBUTE, "run_id", "NOT IN", ("a",))),
        ("dataset.name IN ('a', 'b')", keyed(Entity.DATASET, "name", "IN", ("a", "b"))),
        ("dataset.context NOT IN ('a')", keyed(Entity.DATASET, "context", "NOT IN", ("a",))),
        ("dataset.digest ILIKE 'a%'", keyed(Entity.DATASET, "digest", "ILIKE", "a%")),
        # the MIN / MAX / LATEST extension
        ("MIN(metrics.loss) <= 1", metric("loss", "<=", 1.0, Aggregate.MIN)),
        ("max( metrics.`my key` ) > 0", metric("my key", ">", 0.0, Aggregate.MAX)),
        ("Latest(metric.x) = 0", metric("x", "=", 0.0, Aggregate.LATEST)),
    ],
)
def test_run_filter_parses(filter_string, expected, mlflow_reference):
    assert parse_run_filter(filter_string) == (expected,)
    if not re.match(r"(?i)(min|max|latest)\s*\(", filter_string):
        run_search_error, _ = mlflow_reference
        assert run_search_error(filter_string) is None


@pytest.mark.parametrize("filter_string", [None, ""])
def test_no_filter(filter_string):
    assert parse_run_filter(filter_string) == ()
    assert parse_experiment_filter(filter_string) == ()


def test_clauses_are_joined_by_and_in_any_case_and_keep_positions():
    clauses = parse_run_filter("metrics.x > 1 and params.a = 'b' AND tags.t LIKE 'c%' And run_id = 'r'")
    assert [(c.entity, c.key, c.position) for c in clauses] == [
        (Entity.METRIC, "x", 0),
        (Entity.PARAM, "a", 18),
        (Entity.TAG, "t", 37),
        (Entity.ATTRIBUTE, "run_id", 58),
    ]


@pytest.mark.parametrize(
    "filter_string",
    [
        "metrics.x > 1 AND",
        " AND metrics.x > 1",
        "metrics.x > 1 AND AND metrics.x > 1",
        # MLflow accepts a missing AND between two clauses.
        "metrics.x > 1 metrics.x > 1",
    ],
)
def test_stray_and_missing_and_are_tolerated_like_mlflow(filter_string, mlflow_reference):
    clauses = parse_run_filter(filter_string)
    assert all(clause == metric("x", ">", 1.0, position=clause.position) for clause in clauses)
    run_search_error, _ = mlflow_reference
    assert run_search_error(filter_string) is None


def test_spacing_inside_is_not_null_is_free():
    # MLflow's tokenizer only accepts a single space between NOT and NULL.
    assert parse_run_filter("tags.a  IS   NOT   NULL") == (keyed(Entity.TAG, "a", "IS NOT NULL", None),)


def test_like_pattern_with_trailing_backslash_matches_a_backslash():
    (clause,) = parse_run_filter("params.path LIKE 'C:\\'")
    assert clause.value == "C:\\\\"
    (clause,) = parse_run_filter("params.path LIKE 'a\\\\'")
    assert clause.value == "a\\\\"
    # Equality keeps the value as written.
    (clause,) = parse_run_filter("params.path = 'C:\\'")
    assert clause.value == "C:\\"


# ---------------------------------------------------------------------------
# Run filters that MLflow rejects with the same message


@pytest.mark.parametrize(
    "filter_string",
    [
        # comparators
        "metrics.x >> 1",
        "metrics.x <> 1",
        "metrics.x == 1",
        "metrics.x ! 1",
        "metrics.x LIKE 1",
        "params.a > 'b'",
        "params.a NOT LIKE 'b'",
        "tags.a RLIKE 'x'",
        "tags.a NOT ILIKE 'x'",
        "tags.a < 'x'",
        "attributes.status > 'RUNNING'",
        "attributes.run_id > 'a'",
        "attributes.start_time LIKE 1",
        "attributes.end_time != 1 AND attributes.start_time IN (1)",
        "dataset.name > 'x'",
        "dataset.context < 'x'",
        # values
        "metrics.x = 'a'",
        "metrics.x = nan",
        "metrics.x = NULL",
        "metrics.x = `a`",
        "params.a = b",
        "params.a = `b`",
        "params.a = 1",
        "tags.a = 1.5",
        "params.a IN ('a')",
        "tags.x IN ('a')",
        "attributes.start_time > '1'",
        "attributes.status = 1",
        "attributes.status = RUNNING",
        "attributes.status IN ('a')",
        "attributes.run_name IN ('x')",
        "attributes.run_id IN ()",
        "attributes.run_id IN (1, 2)",
        "attributes.run_id IN ('a', 1)",
        "attributes.run_id IN (,)",
        "dataset.name = 1",
        "dataset.name = d",
        # keys
        "attributes.lifecycle_stage = 'active'",
        "attributes.foo = 'x'",
        "attributes.STATUS = 'x'",
        "x > 1",
        "foo.status = 'x'",
        "METRICS.x > 1",
        '"metrics".x > 1',
        "dataset.foo = 'x'",
        # IS NULL only on tags and params
        "metrics.x IS NULL",
        "attributes.status IS NULL",
        "attributes.end_time IS NOT NULL",
        "dataset.name IS NULL",
        # shape
        "metrics.x > 1 OR params.a = 'b'",
        "params.a = 'x' AND metrics.x > 1 OR metrics.y < 2",
        "params.a = 'b' AND NOT params.c = 'd'",
        "metrics.x > 1; params.a = 'b'",
        "AVG(metrics.x) > 1",
        "'a' = 'b'",
        "'run name' = 'x'",
        " ",
        # MLflow validates all keys and values before any comparator.
        "metrics.x >> 1 AND params.a = 1",
        "params.a > 'x' AND metrics.x >> 1",
    ],
)
def test_run_filter_errors_match_mlflow(filter_string, mlflow_reference):
    run_search_error, _ = mlflow_reference
    expected = run_search_error(filter_string)
    assert expected is not None
    assert normalise_sets(run_filter_error(filter_string)) == normalise_sets(expected)


def test_comparator_messages_keep_mlflow_text_exactly():
    assert run_filter_error("metrics.x >> 1") == (
        "Invalid comparator '>>' not one of '{'=', '!=', '>', '>=', '<', '<='}"
    )
    assert run_filter_error("params.a > 'b'") == (
        "Invalid comparator '>' not one of '{'=', '!=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}'"
    )
    assert run_filter_error("metrics.x > 1 OR params.a = 'b'") == "Invalid clause(s) in filter string: 'OR'"


# ---------------------------------------------------------------------------
# Run filters where MLflow's message is vague (or MLflow fails): ours point at the position


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        ("metrics.x", "expected a comparison operator after 'metrics.x' at position 9"),
        ("metrics.x >", "expected a value after '>' at position 11"),
        ("metrics.x > +1", "unexpected '+', expected a value after '>' at position 12"),
        ("metrics.my-key > 1", "unexpected '-', expected a comparison operator after 'metrics.my' at position 10"),
        ("(metrics.x > 1)", "'(': parentheses are not supported, join clauses with AND at position 0"),
        ("metrics.x = 1 AND (params.a = 'b')", "'(': parentheses are not supported, join clauses with AND at position 18"),
        ("params.a = 'b", "unterminated quoted text starting with ' at position 11"),
        ("tags.`a = 'b'", "unterminated quoted text starting with ` at position 5"),
        ("tags.a IS 'x'", "expected NULL or NOT NULL after IS at position 10"),
        ("tags.a NOT = 'x'", "expected LIKE, ILIKE or IN after NOT at position 11"),
        ("attributes.run_id IN 'a'", "IN takes a parenthesised list of quoted strings, found 'a' at position 21"),
        (".a = 'x'", "unexpected '.', expected a key at position 0"),
        ("metrics.x > 1 -- comment", "unexpected '-', expected a key at position 14"),
        ("metrics.x between 1 and 2", "unexpected 'between', expected a comparison operator after 'metrics.x' at position 10"),
        ("MIN(metrics.x > 1", "expected ')' to close MIN( at position 14"),
        ("metrics.x > 1;", "unexpected ';' at position 13"),
    ],
)
def test_shape_errors_give_the_position(filter_string, message, mlflow_reference):
    assert run_filter_error(filter_string) == f"Invalid clause(s) in filter string: {message}"
    run_search_error, _ = mlflow_reference
    assert run_search_error(filter_string) is not None


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        # MLflow accepts these and then fails inside the database driver.
        (
            "attributes.run_id = ('a','b')",
            "Invalid comparison clause. The comparator '=' takes a single quoted string, not a list (at position 0)",
        ),
        (
            "metrics.x > 1 AND dataset.name != ('a')",
            "Invalid comparison clause. The comparator '!=' takes a single quoted string, not a list (at position 18)",
        ),
        (
            "attributes.run_id IN (a)",
            "While parsing a list in the query, expected a non-empty list of string values, but got ill-formed list.",
        ),
        # the extension, on something that is not a metric
        (
            "MIN(params.a) = 'x'",
            "Invalid comparison clause. MIN(...) applies to metrics only, found parameter 'a' at position 0",
        ),
        (
            "metrics.x > 1 AND max(attributes.start_time) > 1",
            "Invalid comparison clause. MAX(...) applies to metrics only, found attribute 'start_time' at position 18",
        ),
        ("MIN(metrics.x) IS NULL", "IS NULL / IS NOT NULL is only supported for tags and params, not for 'metric' 'x'"),
        ("MIN(metrics.x) LIKE 1", "Invalid comparator 'LIKE' not one of '{'=', '!=', '>', '>=', '<', '<='}"),
        # MLflow takes this as the empty key.
        ("params.= 'x'", "Invalid clause(s) in filter string: expected a key after 'params.' at position 7"),
        ("params.a = 'x\x00'", "Invalid filter: the character U+0000 is not allowed (at position 13)"),
    ],
)
def test_other_errors(filter_string, message):
    assert run_filter_error(filter_string) == message


# ---------------------------------------------------------------------------
# order_by of runs


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("attributes.start_time DESC", OrderKey(Entity.ATTRIBUTE, "start_time", False)),
        ("start_time desc", OrderKey(Entity.ATTRIBUTE, "start_time", False)),
        ("created", OrderKey(Entity.ATTRIBUTE, "start_time", True)),
        ("Created ASC", OrderKey(Entity.ATTRIBUTE, "start_time", True)),
        ("attributes.run_name", OrderKey(Entity.ATTRIBUTE, "run_name", True)),
        ("attributes.run_id", OrderKey(Entity.ATTRIBUTE, "run_id", True)),
        ("attr.status", OrderKey(Entity.ATTRIBUTE, "status", True)),
        ("attributes.end_time", OrderKey(Entity.ATTRIBUTE, "end_time", True)),
        ("user_id", OrderKey(Entity.ATTRIBUTE, "user_id", True)),
        ("artifact_uri", OrderKey(Entity.ATTRIBUTE, "artifact_uri", True)),
        ("metrics.loss", OrderKey(Entity.METRIC, "loss", True, Aggregate.LATEST)),
        ("metric.loss   DESC", OrderKey(Entity.METRIC, "loss", False, Aggregate.LATEST)),
        ("metrics.`my loss` DESC", OrderKey(Entity.METRIC, "my loss", False, Aggregate.LATEST)),
        ('metrics."my loss" DESC', OrderKey(Entity.METRIC, "my loss", False, Aggregate.LATEST)),
        ("params.lr asc", OrderKey(Entity.PARAM, "lr", True)),
        ("param.lr", OrderKey(Entity.PARAM, "lr", True)),
        ("tags.t", OrderKey(Entity.TAG, "t", True)),
        ("tags.`mlflow.runName`", OrderKey(Entity.TAG, "mlflow.runName", True)),
    ],
)
def test_run_order_by_parses(clause, expected, mlflow_reference):
    assert parse_run_order_by([clause]) == (expected,)
    run_search_error, _ = mlflow_reference
    assert run_search_error(order_by=[clause]) is None


def test_run_order_by_extension_and_lenient_whitespace():
    assert parse_run_order_by(["MIN(metrics.loss)", "max(metrics.`a b`) DESC", " params.lr DESC "]) == (
        OrderKey(Entity.METRIC, "loss", True, Aggregate.MIN),
        OrderKey(Entity.METRIC, "a b", False, Aggregate.MAX),
        OrderKey(Entity.PARAM, "lr", False),
    )
    assert parse_run_order_by(None) == ()
    assert parse_run_order_by([]) == ()


@pytest.mark.parametrize(
    "order_by",
    [
        ["metrics.loss DESCENDING"],
        ["metrics.loss ASC DESC"],
        ["metrics.loss, params.lr"],
        ["metrics.loss asc nulls first"],
        ["metrics.loss DESC;"],
        [""],
        ["foo.bar"],
        ["attributes.`Run name`"],
        ["attributes.lifecycle_stage"],
        ["attributes.experiment_id"],
        ["timestamp"],
        ["dataset.name"],
        ["metrics.a", "metric.a DESC"],
        ["created", "attributes.start_time"],
    ],
)
def test_run_order_by_errors_match_mlflow(order_by, mlflow_reference):
    run_search_error, _ = mlflow_reference
    expected = run_search_error(order_by=order_by)
    assert expected is not None
    with pytest.raises(InvalidParameter) as caught:
        parse_run_order_by(order_by)
    assert normalise_sets(caught.value.message) == normalise_sets(expected)


def test_run_order_by_aggregates_are_distinct_keys_but_not_repeatable():
    assert len(parse_run_order_by(["metrics.loss", "MIN(metrics.loss)", "MAX(metrics.loss)"])) == 3
    with pytest.raises(InvalidParameter, match="`order_by` contains duplicate fields"):
        parse_run_order_by(["metrics.loss", "LATEST(metrics.loss) DESC"])
    with pytest.raises(InvalidParameter, match=r"Invalid order_by clause 'AVG\(metrics.loss\)'. Could not be parsed."):
        parse_run_order_by(["AVG(metrics.loss)"])


# ---------------------------------------------------------------------------
# Experiment filters and order_by


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("name = 'x'", keyed(Entity.ATTRIBUTE, "name", "=", "x")),
        ("attribute.name LIKE 'x%'", keyed(Entity.ATTRIBUTE, "name", "LIKE", "x%")),
        ("name ILIKE 'x%'", keyed(Entity.ATTRIBUTE, "name", "ILIKE", "x%")),
        ("name != 'x'", keyed(Entity.ATTRIBUTE, "name", "!=", "x")),
        ("experiment_id = '1'", keyed(Entity.ATTRIBUTE, "experiment_id", "=", 1)),
        ("experiment_id IN ('1', '2')", keyed(Entity.ATTRIBUTE, "experiment_id", "IN", (1, 2))),
        ("experiment_id NOT IN ('1')", keyed(Entity.ATTRIBUTE, "experiment_id", "NOT IN", (1,))),
        ("creation_time > 1", keyed(Entity.ATTRIBUTE, "creation_time", ">", 1)),
        ("last_update_time <= 5", keyed(Entity.ATTRIBUTE, "last_update_time", "<=", 5)),
        ("tags.a = 'x'", keyed(Entity.TAG, "a", "=", "x")),
        ("tag.a LIKE 'x'", keyed(Entity.TAG, "a", "LIKE", "x")),
        ("tags.`a b` = 'x'", keyed(Entity.TAG, "a b", "=", "x")),
        ("tags.a IS NULL", keyed(Entity.TAG, "a", "IS NULL", None)),
        ("tags.a is not null", keyed(Entity.TAG, "a", "IS NOT NULL", None)),
    ],
)
def test_experiment_filter_parses(filter_string, expected, mlflow_reference):
    assert parse_experiment_filter(filter_string) == (expected,)
    _, experiment_search_error = mlflow_reference
    assert experiment_search_error(filter_string) is None


def test_experiment_filter_accepts_lower_case_like():
    # MLflow's experiment search compares the comparator's spelling case-sensitively
    # and rejects these; the run search accepts them, and so do we here.
    assert parse_experiment_filter("name like 'x%' and tags.a ilike 'y'") == (
        keyed(Entity.ATTRIBUTE, "name", "LIKE", "x%"),
        keyed(Entity.TAG, "a", "ILIKE", "y", position=19),
    )


@pytest.mark.parametrize(
    "filter_string",
    [
        "attributes.name = 'x'",
        "attr.name = 'x'",
        "params.a = 'x'",
        "metrics.a > 1",
        "name > 'x'",
        "name IN ('a')",
        "name NOT IN ('a')",
        "experiment_id = 1",
        "experiment_id = 'abc'",
        "experiment_id > '1'",
        "experiment_id LIKE '1%'",
        "experiment_id IN ('1', 'x')",
        "creation_time > 1.5",
        "creation_time > '1'",
        "creation_time LIKE 1",
        "tags.a > 'x'",
        "name IS NULL",
        "foo = 'x'",
        "lifecycle_stage = 'active'",
        "artifact_location = 'x'",
        "name = 'x' OR name = 'y'",
    ],
)
def test_experiment_filter_errors_match_mlflow(filter_string, mlflow_reference):
    _, experiment_search_error = mlflow_reference
    expected = experiment_search_error(filter_string)
    assert expected is not None
    assert normalise_sets(experiment_filter_error(filter_string)) == normalise_sets(expected)


def test_experiment_filter_rejects_metric_functions():
    assert experiment_filter_error("MIN(name) = 'x'") == (
        "Invalid comparison clause. Expected 'Identifier' found 'MIN(name)'"
    )


def test_experiment_order_by(mlflow_reference):
    _, experiment_search_error = mlflow_reference
    parsed = parse_experiment_order_by(["name", "experiment_id ASC", "creation_time desc", "last_update_time DESC"])
    assert parsed == (
        OrderKey(Entity.ATTRIBUTE, "name", True),
        OrderKey(Entity.ATTRIBUTE, "experiment_id", True),
        OrderKey(Entity.ATTRIBUTE, "creation_time", False),
        OrderKey(Entity.ATTRIBUTE, "last_update_time", False),
    )
    for order_by in (["attributes.name"], ["tags.a"], ["foo"], ["lifecycle_stage"], ["metrics.x"], ["name DESCENDING"]):
        expected = experiment_search_error(order_by=order_by)
        assert expected is not None
        with pytest.raises(InvalidParameter) as caught:
            parse_experiment_order_by(order_by)
        assert normalise_sets(caught.value.message) == normalise_sets(expected)
