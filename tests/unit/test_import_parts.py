"""A batch of runs cut into the parts worker processes take: whole runs, every series once and in
order, every logged-model point with exactly one part."""

from __future__ import annotations

from gateway.store.mlflow_import import series_reading
from gateway.store.mlflow_import.series_reading import Batch, _parts


def test_parts_are_whole_runs_in_order_and_each_model_point_goes_with_one(monkeypatch):
    monkeypatch.setattr(series_reading, "POINTS_PER_PART", 100)
    series = [("b", "loss", 60), ("b", "acc", 60), ("d", "loss", 30), ("f", "loss", 500), ("h", "loss", 10),
              ("h", "acc", 10)]
    batch = Batch("a", "j", series, 'run_uuid, "key"', None)
    # Logged-model points of runs with metric rows, of runs without any (a, c, e, g, j),
    # and of a run id spelled in capitals (as MySQL may keep it).
    model_points = {(run, "m"): {(0, 0, 0.0): ("model", None, None)} for run in "abcdefghj"}
    model_points[("F", "m")] = {(0, 0, 0.0): ("model", None, None)}
    parts = _parts(batch, model_points)

    assert [[s[0] for s in part.series] for part, _ in parts] == [["b", "b"], ["d", "f"], ["h", "h"]]
    assert [entry for part, _ in parts for entry in part.series] == series
    assert [(part.low, part.high) for part, _ in parts] == [("a", "b"), ("d", "f"), ("h", "j")]
    assert [sorted(run for run, _ in points) for _, points in parts] == [
        ["a", "b", "c"], ["F", "d", "e", "f", "g"], ["h", "j"]]


def test_a_batch_without_metric_rows_is_one_part_with_its_model_points():
    batch = Batch("a", "c", [], 'run_uuid, "key"', None)
    model_points = {("b", "m"): {(0, 0, 0.0): ("model", None, None)}}
    assert _parts(batch, model_points) == [(batch, model_points)]


def test_two_spellings_of_a_run_id_stay_in_one_part(monkeypatch):
    # As MySQL may hold them: its collation takes both for one run, and reads them together.
    monkeypatch.setattr(series_reading, "POINTS_PER_PART", 100)
    series = [("ab", "loss", 150), ("AB", "acc", 10), ("cd", "loss", 10)]
    parts = _parts(Batch("a", "z", series, 'run_uuid, "key"', None), {})
    assert [[s[0] for s in part.series] for part, _ in parts] == [["ab", "AB"], ["cd"]]
