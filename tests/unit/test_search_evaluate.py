"""The reference evaluator: its rules, and agreement with MLflow's in-memory search."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from gateway.search import evaluate

NAN = math.nan


def make_run(run_id="0" * 32, **fields):
    run = {
        "run_id": run_id,
        "name": "run",
        "status": "RUNNING",
        "user_id": "alice",
        "artifact_uri": "s3://bucket/run",
        "lifecycle_stage": "active",
        "start_time": 100,
        "end_time": None,
        "metrics": {},
        "params": {},
        "tags": {},
        "datasets": [],
    }
    run.update(fields)
    return run


def summary(value, minimum=None, maximum=None):
    return {"value": value, "min": minimum, "max": maximum}


# ---------------------------------------------------------------------------
# Filter rules


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("metrics.m = 0.5", True),
        ("metrics.m != 0.5", False),
        ("metrics.m > 0", True),
        ("metrics.missing != 0.5", False),
        ("metrics.nan != 1", True),
        ("metrics.nan = 1", False),
        ("metrics.nan > -1e400", False),
        ("metrics.nan < 1e400", False),
        ("MIN(metrics.m) = -1", True),
        ("MAX(metrics.m) >= 2", True),
        ("latest(metrics.m) < 1", True),
        # min/max absent (every point NaN) behave as NaN
        ("MIN(metrics.nan) != 3", True),
        ("MIN(metrics.nan) < 3", False),
        ("params.p = 'v1'", True),
        ("params.p != 'v1'", False),
        ("params.missing != 'v1'", False),
        ("params.missing IS NULL", True),
        ("params.p IS NULL", False),
        ("params.p IS NOT NULL", True),
        ("params.p LIKE 'v%'", True),
        ("params.p LIKE 'V%'", False),
        ("params.p ILIKE 'V_'", True),
        ("params.pct LIKE '50\\%'", True),
        ("params.pct LIKE '5_\\%'", True),
        ("params.pct LIKE '50\\_'", False),
        ("params.path LIKE 'C:\\'", True),
        ("params.path = 'C:\\'", True),
        ("params.multiline LIKE 'a%b'", True),
        ("tags.t = 'x'", True),
        ("tags.`mlflow.runName` = 'run'", True),
        ("tags.mlflow.runName LIKE 'r%'", True),
        ("tags.mlflow.runName IS NULL", False),
        ("attributes.run_name = 'run'", True),
        ("attributes.`Run name` != 'run'", False),
        ("status = 'RUNNING'", True),
        ("user_id ILIKE 'ALI%'", True),
        ("artifact_uri LIKE 's3://%'", True),
        ("start_time > 99", True),
        ("created >= 100.5", False),
        ("end_time > 0", False),
        ("end_time != 0", False),
        ("run_id = '" + "0" * 32 + "'", True),
        ("run_id IN ('zz', '" + "0" * 32 + "')", True),
        ("run_id NOT IN ('" + "0" * 32 + "')", False),
        ("run_id LIKE '000%'", True),
        ("run_id = '" + "0" * 31 + "'", False),
        ("dataset.name = 'd2'", True),
        ("dataset.name != 'd1'", True),
        ("dataset.digest IN ('zz')", False),
        ("dataset.digest NOT IN ('x')", False),
        ("dataset.digest NOT IN ('y')", True),
        ("dataset.context = 'train'", True),
        ("dataset.context = 'eval'", False),
        ("dataset.context != 'train'", False),
        ("metrics.m > 0 AND params.p = 'v1' AND tags.t = 'x'", True),
        ("metrics.m > 0 AND params.p = 'v2'", False),
        (None, True),
    ],
)
def test_filter_rules(filter_string, expected):
    run = make_run(
        metrics={"m": summary(0.5, -1.0, 2.0), "nan": summary(NAN)},
        params={"p": "v1", "pct": "50%", "path": "C:\\", "multiline": "a\nb"},
        tags={"t": "x"},
        datasets=[
            {"name": "d1", "digest": "x", "tags": [{"key": "mlflow.data.context", "value": "train"}]},
            {"name": "d2", "digest": "x", "tags": []},
        ],
    )
    assert evaluate.matches(filter_string, run) is expected


def test_like():
    assert evaluate.like("abc", "a%")
    assert evaluate.like("abc", "%")
    assert evaluate.like("", "%")
    assert not evaluate.like("abc", "a_")
    assert evaluate.like("a.c", "a.c") and not evaluate.like("abc", "a.c")
    assert evaluate.like("a%", "a\\%") and not evaluate.like("ab", "a\\%")
    assert evaluate.like("a\\b", "a\\\\b")
    assert evaluate.like("ABC", "a%", case_insensitive=True)
    assert not evaluate.like("ABC", "a%")


def test_view_type():
    assert evaluate.view_type_matches("ACTIVE_ONLY", make_run())
    assert not evaluate.view_type_matches("DELETED_ONLY", make_run())
    assert evaluate.view_type_matches("ALL", make_run(lifecycle_stage="deleted"))


# ---------------------------------------------------------------------------
# Ordering rules


def ordered_ids(runs, order_by):
    return [run["run_id"] for run in evaluate.sort_runs(runs, order_by)]


def test_default_order_is_start_time_desc_then_run_id_missing_last():
    runs = [
        make_run("c" * 32, start_time=None),
        make_run("b" * 32, start_time=5),
        make_run("a" * 32, start_time=5),
        make_run("d" * 32, start_time=9),
    ]
    assert ordered_ids(runs, None) == ["d" * 32, "a" * 32, "b" * 32, "c" * 32]


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_values_then_nan_then_missing_in_both_directions(direction):
    runs = [
        make_run("1" * 32, metrics={"m": summary(2.0)}),
        make_run("2" * 32, metrics={}),
        make_run("3" * 32, metrics={"m": summary(NAN)}),
        make_run("4" * 32, metrics={"m": summary(1.0)}),
    ]
    values = ["4" * 32, "1" * 32] if direction == "ASC" else ["1" * 32, "4" * 32]
    assert ordered_ids(runs, [f"metrics.m {direction}"]) == [*values, "3" * 32, "2" * 32]


def test_min_max_order_and_text_order_by_code_point():
    runs = [
        make_run("1" * 32, metrics={"m": summary(0.0, 5.0, 9.0)}, params={"p": "b"}),
        make_run("2" * 32, metrics={"m": summary(0.0, None, None)}, params={"p": "B"}),
        make_run("3" * 32, metrics={"m": summary(0.0, 1.0, 10.0)}, params={"p": "é"}),
    ]
    assert ordered_ids(runs, ["MIN(metrics.m)"]) == ["3" * 32, "1" * 32, "2" * 32]
    assert ordered_ids(runs, ["MAX(metrics.m) DESC"]) == ["3" * 32, "1" * 32, "2" * 32]
    assert ordered_ids(runs, ["params.p"]) == ["2" * 32, "1" * 32, "3" * 32]
    assert ordered_ids(runs, ["params.p DESC"]) == ["3" * 32, "1" * 32, "2" * 32]


def test_search_combines_view_filter_and_order():
    runs = [
        make_run("1" * 32, metrics={"m": summary(1.0)}),
        make_run("2" * 32, metrics={"m": summary(3.0)}, lifecycle_stage="deleted"),
        make_run("3" * 32, metrics={"m": summary(2.0)}),
    ]
    found = evaluate.search(runs, filter_string="metrics.m > 0", order_by=["metrics.m DESC"])
    assert [run["run_id"] for run in found] == ["3" * 32, "1" * 32]


# ---------------------------------------------------------------------------
# Agreement with MLflow's in-memory search where the rules coincide
# (its LIKE has no backslash escape and it knows no MIN/MAX; those are left out).


def random_runs(seed: int, count: int) -> list[dict]:
    generator = random.Random(seed)
    texts = ["", "a", "A", "ab", "b", "ba"]
    runs = []
    for index in range(count):
        name = generator.choice(["run-a", "run-b", "Run-A"])
        datasets = []
        for dataset_name in generator.sample(["d1", "d2"], generator.choice([0, 1, 2])):
            context = generator.choice([[], [{"key": "mlflow.data.context", "value": generator.choice(["train", "eval"])}]])
            datasets.append({"name": dataset_name, "digest": generator.choice(["x", "y"]), "tags": context})
        runs.append(
            make_run(
                f"{index:032x}",
                name=name,
                status=generator.choice(["RUNNING", "FINISHED"]),
                user_id=generator.choice(["", "alice", "bob"]),
                start_time=generator.choice([1, 2, 3]),
                end_time=generator.choice([None, 5]),
                metrics={
                    key: summary(generator.choice([NAN, -1.0, 0.0, 0.5, 2.0]))
                    for key in ("a", "b")
                    if generator.random() < 0.7
                },
                params={key: generator.choice(texts) for key in ("a", "b") if generator.random() < 0.6},
                tags={"mlflow.runName": name, **{key: generator.choice(texts) for key in ("a", "b") if generator.random() < 0.6}},
                datasets=datasets,
            )
        )
    return runs


def to_mlflow_run(run: dict):
    from mlflow.entities import (
        Dataset,
        DatasetInput,
        InputTag,
        Metric,
        Param,
        Run,
        RunData,
        RunInfo,
        RunInputs,
        RunTag,
    )

    info = RunInfo(
        run_id=run["run_id"],
        experiment_id="1",
        user_id=run["user_id"],
        status=run["status"],
        start_time=run["start_time"],
        end_time=run["end_time"],
        lifecycle_stage=run["lifecycle_stage"],
        artifact_uri=run["artifact_uri"],
        run_name=run["name"],
    )
    data = RunData(
        metrics=[Metric(key, values["value"], 0, 0) for key, values in run["metrics"].items()],
        params=[Param(key, value) for key, value in run["params"].items()],
        tags=[RunTag(key, value) for key, value in run["tags"].items()],
    )
    inputs = RunInputs(
        dataset_inputs=[
            DatasetInput(
                Dataset(dataset["name"], dataset["digest"], "local", "src"),
                [InputTag(tag["key"], tag["value"]) for tag in dataset["tags"]],
            )
            for dataset in run["datasets"]
        ]
    )
    return Run(info, data, inputs)


MLFLOW_COMPARABLE_FILTERS = [
    *(f"metrics.{key} {op} {value}" for key, op, value in itertools.product("ab", ["=", "!=", "<", "<=", ">", ">="], ["0", "0.5", "-1"])),
    *(f"params.{key} {op} '{value}'" for key, op, value in itertools.product("ab", ["=", "!=", "LIKE", "ILIKE"], ["", "a", "a%", "_", "%A"])),
    *(f"tags.{key} {op} '{value}'" for key, op, value in itertools.product(["a", "`mlflow.runName`"], ["=", "!=", "LIKE", "ILIKE"], ["a", "run-a", "run%", "%A"])),
    "attributes.run_name = 'run-a'",
    "attributes.run_name ILIKE 'run-a'",
    "status != 'RUNNING'",
    "user_id = ''",
    "user_id LIKE 'a%'",
    "start_time > 1",
    "created <= 2",
    "end_time != 5",
    "end_time < 6",
    f"run_id IN ('{0:032x}', '{3:032x}')",
    f"run_id NOT IN ('{0:032x}', '{3:032x}')",
    f"run_id = '{2:032x}'",
    "run_id LIKE '%1'",
    "dataset.name = 'd1'",
    "dataset.name != 'd1'",
    "dataset.digest IN ('x')",
    "dataset.digest NOT IN ('x')",
    "dataset.context = 'train'",
    "dataset.context LIKE 'e%'",
    "dataset.context NOT IN ('train')",
    "metrics.a > 0 AND params.b = 'a' AND tags.a != 'b'",
    "metrics.a != 0 AND metrics.b != 0",
]


@pytest.fixture(scope="module")
def mlflow_runs():
    runs = random_runs(seed=7, count=60)
    return runs, [to_mlflow_run(run) for run in runs]


@pytest.mark.parametrize("filter_string", MLFLOW_COMPARABLE_FILTERS)
def test_filter_agrees_with_mlflow(filter_string, mlflow_runs):
    from mlflow.utils.search_utils import SearchUtils

    runs, mlflow_runs_ = mlflow_runs
    expected = [run.info.run_id for run in SearchUtils.filter(mlflow_runs_, filter_string)]
    assert [run["run_id"] for run in runs if evaluate.matches(filter_string, run)] == expected


@pytest.mark.parametrize(
    "order_by",
    [
        None,
        ["metrics.a"],
        ["metrics.a DESC"],
        ["metrics.b DESC", "params.a"],
        ["params.a DESC", "tags.b"],
        ["tags.a", "metrics.a DESC"],
        ["attributes.status", "attributes.user_id DESC"],
        ["attributes.start_time ASC"],
        ["created DESC", "attributes.run_id DESC"],
        ["attributes.run_name DESC"],
    ],
)
def test_order_agrees_with_mlflow(order_by, mlflow_runs):
    from mlflow.utils.search_utils import SearchUtils

    runs, mlflow_runs_ = mlflow_runs
    expected = [run.info.run_id for run in SearchUtils.sort(mlflow_runs_, order_by)]
    assert ordered_ids(runs, order_by) == expected
