"""gateway.mlflow's checks against MLflow's own, message for message.

Where MLflow's check is a plain function (its validators, the server's request
check, the store's helpers) the test calls it on the same input and compares
the text character for character. Where MLflow has no message for an input
(it stores a wrong value or fails with a 500) the test pins the gateway's text
and, where cheap, what MLflow does instead.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from google.protobuf.json_format import ParseDict, ParseError
from mlflow.entities import Dataset, ExperimentTag, InputTag
from mlflow.exceptions import MlflowException
from mlflow.protos.service_pb2 import LogMetric
from mlflow.server import handlers as mlflow_handlers
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils import validation as mlflow_validation

from gateway.mlflow import experiments, inputs, messages, numbers, runs, searches, wire
from gateway.errors import InvalidParameter
from gateway.model import FLOAT_MAX, KeyValue

SUFFIX = " See the API docs for more information about request parameters."
BAD_CHARS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
    " spaces ( ), colon(:) and slashes (/)."
)

_assert_required = mlflow_handlers._assert_required
_assert_string = mlflow_handlers._assert_string
_assert_intlike = mlflow_handlers._assert_intlike
_assert_floatlike = mlflow_handlers._assert_floatlike


def mlflow_message(fn, *args, **kwargs) -> str | None:
    """MLflow's message for a call, or None if it accepts the input."""
    try:
        fn(*args, **kwargs)
    except MlflowException as exc:
        return exc.message
    return None


def gateway_message(fn, *args, **kwargs) -> str | None:
    try:
        fn(*args, **kwargs)
    except InvalidParameter as exc:
        assert exc.error_code == "INVALID_PARAMETER_VALUE"
        assert exc.status == 400
        return exc.message
    return None


def request_check(schema, param, value, parsed=False) -> str | None:
    """The server's request check on one field; ``parsed`` is whether protobuf accepted the body."""
    return mlflow_message(
        mlflow_handlers._validate_param_against_schema,
        schema=schema,
        param=param,
        value=value,
        proto_parsing_succeeded=parsed,
    )


def batch_required(path):
    """The presence check log-batch applies to each metric's key, value and timestamp."""
    return [lambda x: _assert_required(x, path=path)]


def protobuf_double(raw):
    return ParseDict({"value": raw}, LogMetric()).value


def protobuf_int64(raw):
    return ParseDict({"timestamp": raw}, LogMetric()).timestamp


# ---- request checks -------------------------------------------------------------------


@pytest.mark.parametrize("param", ["run_id", "value", "metrics[3].timestamp", "name"])
def test_missing_value(param):
    expected = request_check([_assert_required], param, None)
    assert messages.missing_value(param).message == expected
    assert expected == f"Missing value for required parameter '{param}'.{SUFFIX}"


@pytest.mark.parametrize(
    ("schema", "param", "value"),
    [
        ([_assert_floatlike], "value", "abc"),
        ([_assert_string], "key", 123),
        ([_assert_string], "value", 1.5),
        ([_assert_string], "name", True),
        ([_assert_string], "name", False),
        ([_assert_string], "run_id", None),
        ([_assert_string], "value", [1, "a", None]),
        ([_assert_string], "value", {"b": 1, "a": [2, {"d": 1, "c": 2}]}),
        ([_assert_floatlike], "value", "é\"quoted\""),
        ([_assert_intlike], "timestamp", ""),
    ],
)
def test_invalid_type(schema, param, value):
    expected = request_check(schema, param, value)
    assert expected is not None
    assert messages.invalid_type(param, value).message == expected


def test_invalid_type_spacing_is_mlflows():
    # MLflow's text has two spaces after "supplied:"; a single space would differ from the server.
    message = messages.invalid_type("value", "abc").message
    assert message == (
        "Invalid value \"abc\" for parameter 'value' supplied:  Hint: Value was of type 'str'." + SUFFIX
    )


@pytest.mark.parametrize("value", [None, ""])
def test_required_rejects_absent(value):
    assert gateway_message(messages.required, value, "run_id") == request_check([_assert_required], "run_id", value)


@pytest.mark.parametrize("value", [0, False, "x", []])
def test_required_accepts_present(value):
    assert messages.required(value, "x") is value
    assert request_check([_assert_required], "x", value) is None


# ---- metric values --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [0, 1, -3, 2**62, 10**20, 1.5, -0.25, 1e308, -1e308, "NaN", "Infinity", "-Infinity",
     "1.5", "-2", "1e3", " 2 ", "inf", "-inf", "INFINITY", "-nan", "NAN", "1_000", "1e999"],
)
def test_metric_value_matches_protobuf_and_store(raw):
    parsed = protobuf_double(raw)
    is_nan, stored = SqlAlchemyStore.sanitize_metric_value(None, parsed)
    ours = numbers.metric_value(raw)
    assert type(ours) is float
    if is_nan:
        assert math.isnan(ours)
    else:
        assert ours == stored


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(float("inf"), FLOAT_MAX), (float("-inf"), -FLOAT_MAX), ("Infinity", FLOAT_MAX), ("-Infinity", -FLOAT_MAX)],
)
def test_metric_value_clamps_infinity(raw, expected):
    assert numbers.metric_value(raw) == expected


def test_metric_value_keeps_nan():
    assert math.isnan(numbers.metric_value("NaN"))
    assert math.isnan(numbers.metric_value(float("nan")))


@pytest.mark.parametrize(
    ("raw", "param"),
    [("abc", "value"), ("1,5", "value"), ("0x10", "value"), ("", "value"), (None, "value"),
     ("abc", "metrics[2].value")],
)
def test_metric_value_rejects_like_log_metric(raw, param):
    expected = request_check([_assert_required, _assert_floatlike], param, raw)
    assert expected is not None
    assert gateway_message(numbers.metric_value, raw, param) == expected


@pytest.mark.parametrize("raw", [None, ""])
def test_metric_value_missing_in_batch(raw):
    expected = request_check(batch_required("metrics[0].value"), "metrics", raw)
    assert gateway_message(numbers.metric_value, raw, "metrics[0].value") == expected


@pytest.mark.parametrize(
    ("raw", "type_name"),
    [(True, "bool"), (False, "bool"), ([1], "list"), ({"a": 1}, "dict"), ("nan", "str"), (10**400, "int")],
)
def test_metric_value_rejects_what_mlflow_mishandles(raw, type_name):
    # MLflow stores true as 1.0 and protobuf-rejected "nan" as 0.0, and fails with a
    # 500 on lists, objects and integers too large for a double.
    message = gateway_message(numbers.metric_value, raw, "value")
    assert message == mlflow_validation.invalid_value(
        "value", raw, f" Hint: Value was of type '{type_name}'."
    ) + SUFFIX


def test_mlflow_reads_bool_metric_as_one():
    assert protobuf_double(True) == 1.0
    assert request_check([_assert_required, _assert_floatlike], "value", True) is None


# ---- int64 fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [0, 5, -4, 2**63 - 1, -(2**63), 5.0, -3.0, "123", "-4", "+7", "1e3", "2.0", "1_000",
     "9223372036854775807", "-9223372036854775808"],
)
def test_int64_matches_protobuf(raw):
    assert numbers.int64_field(raw, "timestamp") == protobuf_int64(raw)


@pytest.mark.parametrize(
    ("raw", "param"),
    [("abc", "timestamp"), ("1.5", "timestamp"), ("", "timestamp"), ("1 2", "timestamp"),
     ("abc", "step"), ("0x10", "step"), ("abc", "metrics[4].step")],
)
def test_int64_rejects_like_mlflow(raw, param):
    with pytest.raises(ParseError):
        protobuf_int64(raw)
    expected = request_check([_assert_intlike, _assert_required], param, raw)
    assert expected is not None
    assert gateway_message(numbers.int64_field, raw, param) == expected


@pytest.mark.parametrize(
    "raw", [True, False, 1.5, float("nan"), float("inf"), 2**63, -(2**63) - 1, "9223372036854775808", 1e19, [1], {}]
)
def test_int64_rejects_what_mlflow_stores_as_zero(raw):
    # Protobuf refuses these, yet MLflow's own type check lets most through and
    # the field is stored as 0; the gateway refuses them with MLflow's wording.
    with pytest.raises((ParseError, TypeError)):
        protobuf_int64(raw)
    assert gateway_message(numbers.int64_field, raw, "step") == messages.invalid_type("step", raw).message


def test_int64_missing():
    # A body without a timestamp parses, so only the presence check runs.
    assert gateway_message(numbers.int64_field, None, "timestamp") == request_check(
        [_assert_intlike, _assert_required], "timestamp", None, parsed=True
    )


@pytest.mark.parametrize("path", ["", "metrics[0]"])
@pytest.mark.parametrize(("timestamp", "value"), [(-5, 1.0), (-1, float("nan")), (-(2**63), -2.5)])
def test_metric_timestamp_negative(path, timestamp, value):
    expected = mlflow_message(mlflow_validation._validate_metric, "m", value, timestamp, 0, path=path)
    assert expected is not None
    assert gateway_message(runs.metric_timestamp, timestamp, "m", value, path) == expected


def test_metric_timestamp_accepts_zero():
    assert runs.metric_timestamp(0, "m", 1.0) == 0


# ---- keys -----------------------------------------------------------------------------

BAD_KEYS = [
    "bad$key", "a\tb", "a\n\n", "ü!", "a/../b", "../a", "..a", "..", ".", "/a", "//a", "a//b",
    "a/", "./a", "a/./b", "k" * 251, "ä" * 251,
]
GOOD_KEYS = ["a", "a b/c-d_e.f:g", "é", "٣", " ", "abc\n", "k" * 250, "x/y/z", "a..b"]


@pytest.mark.parametrize("path", ["", "metrics[7]"])
@pytest.mark.parametrize("key", BAD_KEYS + GOOD_KEYS)
def test_metric_key_rules(key, path):
    expected = mlflow_message(mlflow_validation._validate_metric, key, 1.0, 0, 0, path=path)
    name_path = f"{path}.name" if path else "name"
    assert gateway_message(runs.metric_key, key, name_path) == expected
    # Twice: the second call is answered from the cache of valid keys.
    assert gateway_message(runs.metric_key, key, name_path) == expected


def test_metric_key_messages_read_as_documented():
    assert gateway_message(runs.metric_key, "bad$key") == (
        f"Invalid value \"bad$key\" for parameter 'name' supplied: {BAD_CHARS}"
    )
    assert gateway_message(runs.metric_key, "k" * 251) == "'Metric name' exceeds the maximum length of 250 characters"


@pytest.mark.parametrize("key", [None, "", 123, ["a"], True])
def test_metric_key_request_checks(key):
    expected = request_check([_assert_required, _assert_string], "key", key)
    assert gateway_message(runs.metric_key, key) == expected


@pytest.mark.parametrize("key", [None, ""])
def test_metric_key_missing_in_batch(key):
    expected = request_check(batch_required("metrics[3].key"), "metrics", key)
    assert gateway_message(runs.metric_key, key, "metrics[3].name") == expected


@pytest.mark.parametrize("path", ["", "params[2]"])
@pytest.mark.parametrize("key", BAD_KEYS + GOOD_KEYS)
def test_param_key_rules(key, path):
    expected = mlflow_message(mlflow_validation._validate_param, key, "v", path=path)
    assert gateway_message(runs.param, key, "v", path) == expected


@pytest.mark.parametrize("path", ["", "tags[2]"])
@pytest.mark.parametrize("key", BAD_KEYS + GOOD_KEYS)
def test_run_tag_key_rules(key, path):
    expected = mlflow_message(mlflow_validation._validate_tag, key, "v", path=path)
    assert gateway_message(runs.run_tag, key, "v", path) == expected


@pytest.mark.parametrize("key", BAD_KEYS + GOOD_KEYS)
def test_experiment_tag_key_rules(key):
    expected = mlflow_message(mlflow_validation._validate_experiment_tag, key, "v")
    assert gateway_message(experiments.experiment_tag, key, "v") == expected


@pytest.mark.parametrize("fn", [runs.param, runs.run_tag])
@pytest.mark.parametrize(("path", "field"), [("", "key"), ("params[1]", "params[1].key")])
@pytest.mark.parametrize("key", [None, ""])
def test_param_and_tag_missing_key(fn, path, field, key):
    expected = request_check([lambda x: _assert_required(x, path=field)], "params", key)
    assert gateway_message(fn, key, "v", path) == expected


@pytest.mark.parametrize("fn", [runs.param, runs.run_tag, experiments.experiment_tag])
@pytest.mark.parametrize("key", [None, "", 5, [1]])
def test_single_write_key_request_checks(fn, key):
    expected = request_check([_assert_required, _assert_string], "key", key)
    assert gateway_message(fn, key, "v") == expected


# ---- values ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 5999, 6000, 6001, 7000])
def test_param_value_truncated_as_mlflow(length):
    value = "v" * length
    assert runs.param("k", value) == mlflow_validation._validate_param("k", value).value


@pytest.mark.parametrize("length", [0, 7999, 8000, 8001, 9000])
@pytest.mark.parametrize("path", ["", "tags[0]"])
def test_run_tag_value_truncated_as_mlflow(length, path):
    value = "v" * length
    assert runs.run_tag("k", value, path) == mlflow_validation._validate_tag("k", value, path=path).value


@pytest.mark.parametrize(
    ("fn", "mlflow_fn", "path", "limit"),
    [
        (runs.param, mlflow_validation._validate_param, "", 6000),
        (runs.param, mlflow_validation._validate_param, "params[4]", 6000),
        (runs.run_tag, mlflow_validation._validate_tag, "", 8000),
        (runs.run_tag, mlflow_validation._validate_tag, "tags[4]", 8000),
    ],
)
def test_long_values_rejected_when_truncation_off(monkeypatch, fn, mlflow_fn, path, limit):
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    value = "v" * (limit + 1)
    expected = mlflow_message(mlflow_fn, "k", value, path=path)
    assert expected is not None
    assert gateway_message(fn, "k", value, path, truncate=False) == expected
    assert fn("k", "v" * limit, path, truncate=False) == "v" * limit


@pytest.mark.parametrize("fn", [runs.param, runs.run_tag, experiments.experiment_tag])
@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"a": "b"}])
def test_value_must_be_string(fn, value):
    expected = request_check([_assert_string], "value", value)
    assert gateway_message(fn, "k", value) == expected


@pytest.mark.parametrize(("fn", "path"), [(runs.param, "params[3]"), (runs.run_tag, "tags[3]")])
def test_value_type_error_names_batch_path(fn, path):
    assert gateway_message(fn, "k", 5, path) == messages.invalid_type(f"{path}.value", 5).message


@pytest.mark.parametrize("fn", [runs.param, runs.run_tag, experiments.experiment_tag])
def test_absent_value_is_empty(fn):
    assert fn("k", None) == ""


@pytest.mark.parametrize("length", [20000, 20001])
def test_experiment_tag_value_never_truncated(length):
    value = "v" * length
    expected = mlflow_message(mlflow_validation._validate_experiment_tag, "k", value)
    assert gateway_message(experiments.experiment_tag, "k", value) == expected
    if expected is None:
        assert experiments.experiment_tag("k", value) == value


@pytest.mark.parametrize("key", [wire.TRACE_ARCHIVAL_RETENTION_TAG, wire.TRACE_ARCHIVE_NOW_TAG])
@pytest.mark.parametrize(
    "value",
    ["", "x", "[]", "NaN", "null", '{"type":"x"}', '{"type":"duration"}', '{"type":"duration","value":" 30d "}',
     '{"type":"duration","value":"0d"}', '{"type":"duration","value":30}', '{"type":"duration","value":"12h"}',
     '{"type":"duration","value":"' + "1" * 40 + 'd"}', '{"older_than":"5m"}', '{"older_than":"5"}', "{}"],
)
def test_experiment_tag_trace_archival_config(key, value):
    expected = mlflow_message(mlflow_validation._validate_experiment_tag, key, value)
    assert gateway_message(experiments.experiment_tag, key, value) == expected


# ---- experiment names and run ids -----------------------------------------------------


@pytest.mark.parametrize("name", [None, "", 5, ["a"], True])
def test_experiment_name_request_checks(name):
    expected = request_check([_assert_required, _assert_string], "name", name)
    assert gateway_message(experiments.experiment_name, name) == expected


@pytest.mark.parametrize("name", ["x", "x" * 500, "x" * 501, " ", "a/b"])
def test_experiment_name_length(name):
    expected = mlflow_message(mlflow_validation._validate_experiment_name, name)
    assert gateway_message(experiments.experiment_name, name) == expected


def test_rename_names_new_name_but_length_says_name():
    assert gateway_message(experiments.experiment_name, None, param="new_name") == request_check(
        [_assert_string, _assert_required], "new_name", None, parsed=True
    )
    assert gateway_message(experiments.experiment_name, "x" * 501, param="new_name") == (
        "'name' exceeds the maximum length of 500 characters"
    )


@pytest.mark.parametrize(
    "value",
    ["0123456789abcdef0123456789abcdef", "a", "a" * 256, "a" * 257, "_a", "-a", "bad id!", "a.b",
     "é1", "1é", "abc\n", "a-b_c", "a b"],
)
def test_run_id_form(value):
    expected = mlflow_message(mlflow_validation._validate_run_id, value)
    assert gateway_message(runs.run_id, value) == expected
    assert gateway_message(runs.run_id, value) == expected


@pytest.mark.parametrize("value", [None, ""])
def test_run_id_missing(value):
    # A body without run_id parses, so only the presence check runs.
    expected = request_check([_assert_string, _assert_required], "run_id", value, parsed=True)
    assert gateway_message(runs.run_id, value) == expected


@pytest.mark.parametrize("value", [5, ["a"], True])
def test_run_id_type(value):
    expected = request_check([_assert_string, _assert_required], "run_id", value)
    assert gateway_message(runs.run_id, value) == expected


# ---- batches --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts",
    [(1001, 0, 0), (0, 101, 0), (0, 0, 101), (900, 100, 1), (1001, 101, 101), (1000, 101, 0),
     (0, 100, 101), (1000, 0, 0), (800, 100, 100), (0, 0, 0), (1000, 1, 0)],
)
def test_batch_limits(counts):
    metrics, params, tags = counts
    expected = mlflow_message(
        mlflow_validation._validate_batch_log_limits, [None] * metrics, [None] * params, [None] * tags
    )
    assert gateway_message(runs.batch_limits, metrics, params, tags) == expected


def test_batch_limit_message_reads_as_documented():
    assert gateway_message(runs.batch_limits, 1001, 0, 0) == (
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics."
        " Please split up metrics across multiple requests and try again."
    )


@pytest.mark.parametrize("size", [1_000_001, 2_500_000])
def test_batch_body_too_large(size):
    # MLflow measures len() of what it decoded: for a double-encoded body, the string's length.
    expected = mlflow_message(mlflow_validation._validate_batch_log_api_req, "x" * size)
    assert runs.batch_body_too_large(size).message == expected


@pytest.mark.parametrize(
    "keys",
    [["a", "b"], ["d", "d", "e", "e"], ["a", "a", "a"], ["x", "y", "x", "z", "y", "x"], ["it's", "it's"],
     ['q"', 'q"'], ["é", "é"], [], ["k"] * 101],
)
def test_param_keys_unique(keys):
    params = [KeyValue(key, str(index)) for index, key in enumerate(keys)]
    expected = mlflow_message(mlflow_validation._validate_param_keys_unique, params)
    assert gateway_message(runs.param_keys_unique, params) == expected


# ---- search ---------------------------------------------------------------------------

_RUNS_MAX_RESULTS_SCHEMA = [_assert_intlike, lambda x: mlflow_handlers._assert_less_than_or_equal(int(x), 50000)]


def _runs_search_max_results(value):
    return request_check(_RUNS_MAX_RESULTS_SCHEMA, "max_results", value) or mlflow_message(
        SqlAlchemyStore._validate_max_results_param, None, value, allow_null=True
    )


@pytest.mark.parametrize("value", [1, 1000, 50000, 50001, 10**6, 0, -1])
def test_runs_max_results(value):
    assert gateway_message(searches.max_results, value) == _runs_search_max_results(value)


def test_runs_max_results_reads_as_documented():
    assert gateway_message(searches.max_results, 50001) == (
        "Invalid value 50001 for parameter 'max_results' supplied:  Hint: Value was of type 'int'." + SUFFIX
    )


@pytest.mark.parametrize("value", [1, 50000, 50001, 0, -7])
def test_experiments_max_results(value):
    expected = mlflow_message(SqlAlchemyStore._validate_max_results_param, None, value)
    assert gateway_message(searches.page_size, value) == expected


# ---- log-inputs -----------------------------------------------------------------------


def _dataset_fields(**overrides):
    fields = {"name": "d", "digest": "abc", "source_type": "local", "source": "{}", "schema": None, "profile": None}
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    "overrides",
    [{}, {"name": "n" * 500}, {"name": "n" * 501}, {"digest": "d" * 36}, {"digest": "d" * 37},
     {"source": "s" * 65536}, {"schema": "s" * 1048576}, {"profile": "p" * 16777216},
     {"name": "n" * 501, "digest": "d" * 37}],
)
def test_dataset_lengths(overrides):
    fields = _dataset_fields(**overrides)
    expected = mlflow_message(mlflow_validation._validate_dataset, Dataset(**fields))
    assert gateway_message(inputs.dataset, **fields) == expected


@pytest.mark.parametrize(("key", "value"), [("k", "v"), ("k" * 255, "v" * 500), ("k" * 256, "v"), ("k", "v" * 501)])
def test_input_tag_lengths(key, value):
    expected = mlflow_message(mlflow_validation._validate_input_tag, InputTag(key, value))
    assert gateway_message(inputs.input_tag, key, value) == expected


def _dataset_input(tags=(), **overrides):
    return SimpleNamespace(
        dataset=SimpleNamespace(**_dataset_fields(**overrides)),
        tags=[SimpleNamespace(key=key, value=value) for key, value in tags],
    )


def test_dataset_inputs_checks_each_in_order():
    good = _dataset_input([("k", "v")])
    long_tag = _dataset_input([("k", "v" * 501)])
    long_name = _dataset_input(name="n" * 501)
    inputs.dataset_inputs([good, good])
    assert gateway_message(inputs.dataset_inputs, [good, long_tag, long_name]) == (
        "'value' exceeds the maximum length of 500 characters"
    )
    assert gateway_message(inputs.dataset_inputs, [long_name, long_tag]) == (
        "'name' exceeds the maximum length of 500 characters"
    )
    assert gateway_message(inputs.dataset_inputs, [_dataset_input(digest=7)]) == (
        messages.invalid_type("datasets[0].dataset.digest", 7).message
    )


# ---- custom views ---------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 50, 51])
def test_custom_views_on_create(count):
    keys = [f"{wire.CUSTOM_VIEW_TAG_PREFIX}{i}" for i in range(count)] + ["other"]
    expected = mlflow_message(mlflow_handlers._validate_custom_view_count, [ExperimentTag(k, "v") for k in keys])
    assert gateway_message(experiments.custom_views, keys) == expected


@pytest.mark.parametrize(
    ("existing", "key"),
    [(49, "new"), (50, "new"), (50, "0"), (50, None), (60, "new")],
)
def test_custom_view_added(existing, key):
    prefix = wire.CUSTOM_VIEW_TAG_PREFIX
    tags = {f"{prefix}{i}": "v" for i in range(existing)}
    tags["plain"] = "v"
    tag_key = "plain-tag" if key is None else f"{prefix}{key}"
    experiment = SimpleNamespace(tags=tags, experiment_id="17")
    expected = mlflow_message(mlflow_handlers._validate_custom_view_tag_write, experiment, ExperimentTag(tag_key, "v"))
    assert gateway_message(experiments.custom_view_added, tags.keys(), tag_key, "17") == expected


# ---- the cache ------------------------------------------------------------------------


class _NoRegex:
    def match(self, text):
        raise AssertionError(f"regex consulted for {text!r}")


def test_cached_keys_skip_the_rules(monkeypatch):
    runs.metric_key("cached/key")
    runs.run_id("cachedrun0")
    monkeypatch.setattr(runs, "KEY_CHARACTERS", _NoRegex())
    monkeypatch.setattr(runs, "_RUN_ID", _NoRegex())
    assert runs.metric_key("cached/key") == "cached/key"
    assert runs.param("cached/key", "x") == "x"
    assert runs.run_tag("cached/key", "y", "tags[0]") == "y"
    assert runs.run_id("cachedrun0") == "cachedrun0"


def test_invalid_keys_are_not_cached():
    for _ in range(2):
        assert gateway_message(runs.metric_key, "k" * 251) == "'Metric name' exceeds the maximum length of 250 characters"
        assert gateway_message(runs.param, "k" * 251, "v") == "'Param key' exceeds the maximum length of 250 characters"


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(runs, "VALID_CACHE_LIMIT", 10)
    monkeypatch.setattr(runs, "valid_keys", set())
    for index in range(35):
        runs.metric_key(f"key{index}")
        assert len(runs.valid_keys) <= 10
    assert "key34" in runs.valid_keys
