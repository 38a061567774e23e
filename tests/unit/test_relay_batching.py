"""Spooled rows to log-batch calls: MLflow's limits, order, repeats, splitting."""

from __future__ import annotations

import math

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.model import KeyValue, MetricPoint
from gateway.relay.batching import MAX_BATCH_BYTES, take_batch
from gateway.relay.spool import METRIC, PARAM, TAG, Entity

RUN = "a" * 32


def rows(*items: tuple[int, object]) -> list[Entity]:
    return [Entity(seq, kind, item, 20, 0.0) for seq, (kind, item) in enumerate(items, start=1)]


def metric(step: int, key: str = "loss", value: float | None = None) -> tuple[int, MetricPoint]:
    return METRIC, MetricPoint(key, float(step) if value is None else value, 1000 + step, step)


def decoded(batch) -> dict:
    return msgspec.json.decode(batch.body())


def test_a_batch_stops_at_mlflows_limits():
    many_metrics = rows(*(metric(s) for s in range(1001)))
    batch = take_batch(RUN, many_metrics)
    assert len(batch.sent) == 1000 and batch.last_seq == 1000

    many_params = rows(*((PARAM, KeyValue(f"p{i}", "v")) for i in range(150)))
    assert len(take_batch(RUN, many_params).sent) == 100

    many_tags = rows(*((TAG, KeyValue(f"t{i}", "v")) for i in range(101)))
    assert len(take_batch(RUN, many_tags).sent) == 100

    mixed = rows(*(metric(s) for s in range(950)), *((PARAM, KeyValue(f"p{i}", "v")) for i in range(60)))
    assert len(take_batch(RUN, mixed).sent) == 1000  # 1000 entities in all


def test_a_batch_stays_under_the_body_limit():
    big = "x" * 5000
    many = rows(*((TAG, KeyValue(f"t{i}", big)) for i in range(100)))
    batch = take_batch(RUN, many)
    assert 0 < len(batch.sent) < 100
    assert len(batch.body()) <= MAX_BATCH_BYTES


def test_the_body_is_log_batch_json_in_sequence_order():
    batch = take_batch(
        RUN,
        rows(metric(0), (PARAM, KeyValue("lr", "0.1")), metric(1, value=math.nan), (TAG, KeyValue("phase", "a"))),
    )
    assert decoded(batch) == {
        "run_id": RUN,
        "metrics": [
            {"key": "loss", "value": 0.0, "timestamp": 1000, "step": 0},
            {"key": "loss", "value": "NaN", "timestamp": 1001, "step": 1},
        ],
        "params": [{"key": "lr", "value": "0.1"}],
        "tags": [{"key": "phase", "value": "a"}],
    }


def test_repeats_stay_home_and_the_last_tag_wins():
    batch = take_batch(
        RUN,
        rows(
            metric(0),
            metric(0),  # an exact repeat
            (PARAM, KeyValue("lr", "0.1")),
            (PARAM, KeyValue("lr", "0.1")),
            (TAG, KeyValue("phase", "a")),
            (TAG, KeyValue("phase", "b")),
        ),
    )
    assert batch.last_seq == 6  # every row settles with the batch
    body = decoded(batch)
    assert len(body["metrics"]) == 1
    assert body["params"] == [{"key": "lr", "value": "0.1"}]
    assert body["tags"] == [{"key": "phase", "value": "b"}]


def test_a_changed_param_ends_the_batch_so_the_upstream_judges_it_alone():
    batch = take_batch(RUN, rows(metric(0), (PARAM, KeyValue("lr", "0.1")), (PARAM, KeyValue("lr", "0.2")), metric(1)))
    assert batch.last_seq == 2


def test_split_keeps_order_and_covers_every_row():
    batch = take_batch(RUN, rows(*(metric(s) for s in range(7))))
    older, newer = batch.split()
    assert [e.seq for e in older.rows] + [e.seq for e in newer.rows] == [e.seq for e in batch.rows]
    assert older.last_seq < newer.first_seq
    assert len(older.sent) == 3 and len(newer.sent) == 4


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just(METRIC), st.integers(0, 5), st.integers(0, 3)),
            st.tuples(st.just(PARAM), st.integers(0, 150), st.just(0)),
            st.tuples(st.just(TAG), st.integers(0, 150), st.integers(0, 2)),
        ),
        min_size=1,
        max_size=1500,
    )
)
def test_any_backlog_makes_a_valid_prefix_batch(spec):
    items = []
    for kind, a, b in spec:
        if kind == METRIC:
            items.append(metric(a, key=f"m{b}"))
        elif kind == PARAM:
            items.append((PARAM, KeyValue(f"p{a}", "same")))
        else:
            items.append((TAG, KeyValue(f"t{a}", str(b))))
    backlog = rows(*items)
    batch = take_batch(RUN, backlog)
    assert batch.rows == backlog[: len(batch.rows)]  # a prefix, in order
    body = decoded(batch)
    metrics, params, tags = body.get("metrics", []), body.get("params", []), body.get("tags", [])
    assert len(metrics) <= 1000 and len(params) <= 100 and len(tags) <= 100
    assert len(metrics) + len(params) + len(tags) <= 1000
    assert len({p["key"] for p in params}) == len(params)
    assert len({t["key"] for t in tags}) == len(tags)
    # each tag travels with the newest value it has in the batch
    newest = {e.item.key: e.item.value for e in batch.rows if e.kind == TAG}
    assert {t["key"]: t["value"] for t in tags} == newest
