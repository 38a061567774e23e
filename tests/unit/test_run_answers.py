"""The kept answers of runs/search: by run and version, within a bound of bytes, least recently used out first."""

from __future__ import annotations

from gateway.api.run_answers import RunAnswers


def test_an_answer_is_given_again_for_its_version_only():
    answers = RunAnswers(1000)
    answers.put("a", 3, b'{"a":3}')
    assert answers.get("a", 3) == b'{"a":3}'
    assert answers.get("a", 4) is None and answers.get("b", 3) is None
    answers.put("a", 4, b'{"a":4}')
    assert answers.get("a", 3) is None and answers.get("a", 4) == b'{"a":4}'
    assert len(answers) == 1 and answers.bytes == len(b'{"a":4}')


def test_the_least_recently_used_answers_go_first_past_the_bound():
    answers = RunAnswers(30)
    for run_id in "abc":
        answers.put(run_id, 0, b"x" * 10)
    assert answers.get("a", 0) is not None  # a is now the most recently used
    answers.put("d", 0, b"x" * 10)
    assert answers.get("b", 0) is None
    assert [answers.get(run_id, 0) is not None for run_id in "acd"] == [True, True, True]
    assert answers.bytes == 30


def test_an_answer_too_large_or_of_no_version_is_not_kept_and_drops_the_older_one():
    answers = RunAnswers(10)
    answers.put("a", 1, b"x" * 5)
    answers.put("a", 2, b"x" * 11)
    assert answers.get("a", 1) is None and answers.get("a", 2) is None and answers.bytes == 0
    answers.put("b", 1, b"x")
    answers.put("b", -1, b"x")
    assert len(answers) == 0
    assert RunAnswers(0).get("a", 0) is None
