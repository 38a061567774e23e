"""The relay's spool: group commit, order, settle with dead letters, replay after reopening."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.model import KeyValue, MetricPoint
from gateway.relay.spool import METRIC, PARAM, TAG, DeadLetter, Spool, encode_item


def point(step: int) -> tuple[int, bytes]:
    return METRIC, encode_item(MetricPoint("loss", step / 2, 1000 + step, step))


async def test_concurrent_appends_get_consecutive_sequences_in_one_group(tmp_path):
    spool = Spool(str(tmp_path))
    assert await spool.open() == []
    ranges = await asyncio.gather(*(spool.append("run-a", [point(i), point(i + 100)]) for i in range(50)))
    assert sorted(ranges) == [(1 + 2 * i, 2 + 2 * i) for i in range(50)]
    head = await spool.head("run-a", 1000)
    assert [e.seq for e in head] == list(range(1, 101))
    await spool.close()


async def test_settle_moves_refused_entities_to_dead_letters_and_reopen_replays_the_rest(tmp_path):
    spool = Spool(str(tmp_path))
    await spool.open()
    await spool.append("run-a", [point(0), (PARAM, encode_item(KeyValue("lr", "0.1")))])
    await spool.append("run-b", [(TAG, encode_item(KeyValue("phase", "train")))])
    await spool.append("run-a", [point(1)])
    assert [p.key for p in await spool.params_of_run("run-a")] == ["lr"]
    head = await spool.head("run-a", 2)
    await spool.settle("run-a", head[-1].seq, [DeadLetter(head[1], 400, "INVALID_PARAMETER_VALUE", "no")])
    await spool.close()

    reopened = Spool(str(tmp_path))
    backlog = await reopened.open()
    assert [(b.run_id, b.count, b.first_seq, b.last_seq) for b in backlog] == [("run-b", 1, 3, 3), ("run-a", 1, 4, 4)]
    assert (await reopened.head("run-a", 10))[0].item == MetricPoint("loss", 0.5, 1001, 1)
    await reopened.settle("run-a", 4)
    await reopened.settle("run-b", 3)
    assert await reopened.oldest_spooled_at() is None
    # Sequence numbers are never reused, even once the spool is empty.
    assert await reopened.append("run-c", [point(9)]) == (5, 5)
    await reopened.close()

    with sqlite3.connect(str(tmp_path / "spool.sqlite3")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        letters = conn.execute("SELECT run_id, kind, entity, status, error_code, message FROM dead_letters").fetchall()
    assert letters == [("run-a", "param", '{"key":"lr","value":"0.1"}', 400, "INVALID_PARAMETER_VALUE", "no")]
