"""The commit wait of the write path: bounded, and never cancelling the flusher's future."""

from __future__ import annotations

import asyncio

from gateway.api.writes import _done_within


async def test_a_future_done_in_time_is_reported_done():
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_later(0.01, future.set_result, None)
    assert await _done_within(future, 5.0) is True
    assert future.result() is None


async def test_the_wait_ends_at_its_bound_and_leaves_the_future_pending():
    future = asyncio.get_running_loop().create_future()
    assert await _done_within(future, 0.02) is False
    assert not future.done()
    future.set_result(None)  # the flusher may still resolve it afterwards


async def test_a_cancelled_waiter_does_not_cancel_the_future():
    future = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(_done_within(future, 5.0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
    assert not future.done()
    future.set_exception(RuntimeError("refused"))
    assert isinstance(future.exception(), RuntimeError)


async def test_an_already_done_future_needs_no_wait():
    future = asyncio.get_running_loop().create_future()
    future.set_exception(ValueError("refused at flush"))
    assert await _done_within(future, 0.0) is True
    assert isinstance(future.exception(), ValueError)
