"""log-batch's shortcut for plainly valid metrics, and the flush's pre-aggregation, against their references."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mlflow import runs
from gateway.api.decoding import metric_point
from gateway.api.schemas import MetricIn
from gateway.errors import InvalidParameter
from gateway.model import MetricPoint
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
