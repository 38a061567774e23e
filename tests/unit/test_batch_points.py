"""log-batch's shortcut for plainly valid metrics, and the flush's pre-aggregation, against their references."""

from __future__ import annotations

import contextlib
import json
import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api import schemas
from gateway.api.decoding import metric_point
from gateway.api.schemas import MetricIn
from gateway.errors import InvalidParameter
from gateway.mlflow import runs
from gateway.model import MetricColumns, MetricPoint, RunWrite
from gateway.store import points

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ANY_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    INT64,
    st.integers(min_value=2**63, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) - 1),
)
FIELD = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([0.5, -1.5, 2.0, 1e308, -(2.0**63)]),
    ANY_NUMBER,
    st.none(),
    st.booleans(),
    st.sampled_from(["", "1", "NaN", "Infinity", "-Infinity", "nan", "1e3", " 2", "x"]),
)
KEY = st.one_of(st.sampled_from(["loss", "acc", "a/b", "", "../x", "bad key!"]), st.text(max_size=6), st.none(), st.just("loss"))


def metric_items():
    return st.lists(
        st.builds(
            MetricIn,
            key=KEY,
            value=FIELD,
            timestamp=FIELD,
            step=FIELD,
            model_id=st.sampled_from([None, "", "m-1"]),
            dataset_name=st.sampled_from([None, "", "train"]),
        ),
        max_size=5,
    )


def checked_points(items):
    """What the full checks make of the items, or the first error's message."""
    try:
        return [metric_point(item, f"metrics[{index}]") for index, item in enumerate(items)]
    except InvalidParameter as exc:
        return exc.message


def same_points(left, right) -> bool:
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if (a.key, a.timestamp, a.step, a.model_id, a.dataset_name, a.dataset_digest) != (
            b.key, b.timestamp, b.step, b.model_id, b.dataset_name, b.dataset_digest
        ):
            return False
        if not (a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))):
            return False
        if type(a.value) is not float or type(b.value) is not float:
            return False
    return True


@settings(max_examples=400)
@given(metric_items())
def test_the_shortcut_agrees_with_the_full_checks(items):
    for item in items:  # the shortcut only takes keys the full checks accepted before
        try:
            runs.metric_key(item.key, "name")
        except InvalidParameter:
            pass
    fast = runs.plain_metric_points(items)
    full = checked_points(items)
    if fast is None:
        return
    assert not isinstance(full, str), f"shortcut accepted what the checks reject: {full}"
    assert same_points(fast, full)


def test_the_shortcut_takes_the_common_batch():
    runs.metric_key("loss", "name")
    items = [MetricIn(key="loss", value=0.5, timestamp=1700000000000, step=step) for step in range(3)]
    items.append(MetricIn(key="loss", value=2, timestamp=1700000000000))
    points = runs.plain_metric_points(items)
    assert points is not None
    assert [(p.step, p.value) for p in points] == [(0, 0.5), (1, 0.5), (2, 0.5), (0, 2.0)]


def reference_summaries(records):
    """Summaries as SQL would compute them over the distinct points: latest by (step, timestamp,
    value with NaN highest), min and max without NaN, and the count of distinct points."""
    out = {}
    groups: dict[tuple, set] = {}
    for run_id, key, step, timestamp, value in records:
        groups.setdefault((run_id, key), set()).add((step, timestamp, "nan" if math.isnan(value) else value))
    for group, distinct in groups.items():
        latest = max(distinct, key=lambda p: (p[0], p[1], (1, 0.0) if p[2] == "nan" else (0, p[2])))
        finite = [p[2] for p in distinct if p[2] != "nan"]
        out[group] = (*latest, min(finite, default=None), max(finite, default=None), len(distinct))
    return out


def flush_summaries(records):
    """What a flush makes of the records: each (run, key)'s points sorted, made distinct, summarised."""
    groups: dict[tuple, list] = {}
    for run_id, key, step, timestamp, value in records:
        groups.setdefault((run_id, key), []).append(MetricPoint(key, value, timestamp, step))
    out = {}
    for group, found in groups.items():
        summary = points.summary_of(points.arrange(found))
        out[group] = (*summary.latest, summary.min_value, summary.max_value, summary.count)
    return out


def comparable(summary):
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in summary)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2"]),
            st.sampled_from(["loss", "acc"]),
            st.integers(min_value=0, max_value=3),
            st.integers(min_value=0, max_value=3),
            st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.sampled_from([0.0, 1.0, -1.0, math.nan])),
        ),
        max_size=30,
    )
)
def test_summaries_agree_with_a_recomputation(rows):
    got = {group: comparable(summary) for group, summary in flush_summaries(rows).items()}
    want = {group: comparable(summary) for group, summary in reference_summaries(rows).items()}
    assert got == want


JSON_NUMBER = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), INT64, st.integers(min_value=2**63, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) - 1), st.sampled_from([0, -1, 1e308, -1e308, 0.5]),
)
JSON_FIELD = st.one_of(JSON_NUMBER, st.none(), st.booleans(), st.sampled_from(["1", "NaN", "Infinity", "", "x"]))


def json_metrics():
    """log-batch metrics as a client may send them: mostly plain, else null or of any JSON type."""
    required = {
        "key": KEY,
        "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), JSON_FIELD),
        "timestamp": st.one_of(st.integers(min_value=0, max_value=2**45), JSON_FIELD),
    }
    optional = {
        "step": st.one_of(st.integers(min_value=-5, max_value=5), JSON_FIELD),
        "model_id": st.sampled_from([None, None, "", "m-1"]),
        "dataset_name": st.sampled_from([None, None, "", "train"]),
    }
    return st.lists(st.fixed_dictionaries(required, optional=optional), max_size=4)


@settings(max_examples=400)
@given(json_metrics())
def test_a_body_the_plain_decoder_takes_gives_the_points_of_the_full_checks(metrics):
    body = json.dumps({"run_id": "a" * 32, "metrics": metrics}).encode()
    for item in metrics:  # the shortcut only takes keys the full checks accepted before
        with contextlib.suppress(InvalidParameter):
            runs.metric_key(item.get("key"), "name")
    try:
        plain = schemas.decoder(schemas.PlainLogBatch).decode(body)
    except msgspec.MsgspecError:
        return
    columns = runs.plain_metric_columns(plain.metrics)
    if columns is None:
        return
    full = checked_points(schemas.decoder(schemas.LogBatch).decode(body).metrics)
    assert not isinstance(full, str), f"the plain decoder took what the checks reject: {full}"
    by_key = {}
    for point in full:
        by_key.setdefault(point.key, []).append(point)
    assert same_points(list(columns), [point for points_of_key in by_key.values() for point in points_of_key])
    assert len(columns) == len(full)


def test_the_plain_decoder_takes_the_common_batch():
    runs.metric_key("loss", "name")
    body = b'{"run_id": "%s", "metrics": [%s]}' % (
        b"a" * 32, b",".join(b'{"key": "loss", "value": %d.5, "timestamp": 1700000000000, "step": %d}' % (s, s)
                             for s in range(3)),
    )
    columns = runs.plain_metric_columns(schemas.decoder(schemas.PlainLogBatch).decode(body).metrics)
    assert columns is not None and columns.by_key == {"loss": ([0, 1, 2], [1700000000000] * 3, [0.5, 1.5, 2.5])}


SERIES_POINT = st.tuples(
    st.sampled_from(["r1", "r2"]),
    st.sampled_from(["loss", "acc"]),
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=2),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, 1e308]),
    st.sampled_from([None, None, None, "m-1"]),
)


@settings(max_examples=300)
@given(st.lists(st.lists(SERIES_POINT, max_size=12), max_size=5))
def test_a_flush_of_columns_makes_the_chunks_and_summaries_a_flush_of_points_makes(requests):
    as_points, as_columns = [], []
    for request in requests:
        for run_id in ("r1", "r2"):
            mine = [p for p in request if p[0] == run_id]
            if not mine:
                continue
            listed = [MetricPoint(key, value, timestamp, step, model_id) for _, key, step, timestamp, value, model_id in mine]
            as_points.append(RunWrite(run_id, metrics=listed))
            if any(p[5] for p in mine):
                as_columns.append(RunWrite(run_id, metrics=listed))  # a logged model: not plain
                continue
            by_key: dict = {}
            for _, key, step, timestamp, value, _ in mine:
                columns = by_key.setdefault(key, ([], [], []))
                columns[0].append(step)
                columns[1].append(timestamp)
                columns[2].append(value)
            as_columns.append(RunWrite(run_id, metrics=MetricColumns(by_key)))
    want, got = points.batch_by_key(as_points), points.batch_by_key(as_columns)
    assert sorted(got) == sorted(want)
    for series, batch in want.items():
        assert as_lists(got[series].rows) == as_lists(batch.rows)
        assert got[series].summary == batch.summary and got[series].first == batch.first
        assert [identity(p) for p in got[series].points] == [identity(p) for p in batch.points]


def identity(point: MetricPoint) -> tuple:
    return (point.key, point.step, point.timestamp, point.value, point.model_id)


def as_lists(rows: list[tuple]) -> list[tuple]:
    """Chunk rows with their offsets as lists (a gapless run of steps has them as a range)."""
    return [tuple(list(field) if isinstance(field, range) else field for field in row) for row in rows]


@st.composite
def request_parts(draw):
    """One key's columns from several requests: each request's steps rising (with gaps, some wide), the
    requests in any order, their step ranges apart or, sometimes, overlapping."""
    parts, next_step = [], draw(st.integers(min_value=-5, max_value=5))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        next_step += draw(st.sampled_from([0, 1, 1, 3, 500]))  # 0: meets the part before
        steps = []
        for _ in range(draw(st.integers(min_value=1, max_value=9))):
            steps.append(next_step)
            next_step += draw(st.sampled_from([1, 1, 1, 2, 40]))
        stamp = draw(st.integers(min_value=0, max_value=2**40))
        timestamps = [stamp + draw(st.sampled_from([0, 0, 1, 7])) for _ in steps]
        values = [draw(st.sampled_from([0.5, -1.0, 2.0, 1e308, -1e308, float("nan")])) for _ in steps]
        parts.append((steps, timestamps, values))
    if draw(st.booleans()):
        first = parts[0]
        parts[0] = (first[0][::-1], first[1][::-1], first[2][::-1])  # a part whose steps do not rise
    return draw(st.permutations(parts))


@settings(max_examples=400)
@given(request_parts())
def test_a_key_of_several_requests_makes_the_chunks_its_points_make(parts):
    listed = [MetricPoint("loss", v, t, s) for steps, timestamps, values in parts
              for s, t, v in zip(steps, timestamps, values)]
    want = points.KeyBatch.of("r1", "loss", points.arrange(listed))
    got = points.KeyBatch.of_parts("r1", "loss", parts)
    assert as_lists(got.rows) == as_lists(want.rows)
    assert got.summary == want.summary or (math.isnan(got.summary.latest[2]) and math.isnan(want.summary.latest[2]))
    assert [identity(p) for p in got.points] == [identity(p) for p in want.points]
    ordered = points._ordered_parts(parts)
    if ordered is not None:  # the parts laid end to end: their stretches are found as in the points
        assert points._stretches_of_parts(ordered, len(listed)) == points.stretches([p.step for p in want.points])


def test_a_gap_inside_a_part_just_wide_enough_still_cuts_a_stretch():
    # 17 steps: 15 gaps of 1 and one of 17. The span is 32, so a wide gap is over
    # 8 * 32 // 16 = 16: the gap of 17 is one, with the part's gaps adding up to
    # just 16 beyond its length.
    steps = [*range(8), *range(24, 33)]
    part = (steps, [0] * len(steps), [0.5] * len(steps))
    assert points.stretches(steps) == [0, 8, 17]
    assert points._stretches_of_parts([part], len(steps)) == [0, 8, 17]
    assert [row[5:7] for row in points.KeyBatch.of_parts("r1", "loss", [part]).rows] == [(0, 7), (24, 32)]
