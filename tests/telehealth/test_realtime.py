"""The process's publisher queue (telehealth.realtime)."""

from __future__ import annotations

import asyncio

import pytest

from telehealth import realtime


async def test_events_from_the_loop_leave_in_order_through_one_publisher(monkeypatch):
    # given the web process's publisher on this loop, and a transport that keeps batches
    batches: list[list[str]] = []

    async def send(items):
        batches.append([topic for topic, _ in items])

    monkeypatch.setattr(realtime, "_send", send)
    monkeypatch.setattr(realtime, "_publisher", None)
    realtime.register_process_loop(asyncio.get_running_loop())
    # when a socket publishes presence and a committed write publishes a message
    await realtime.publish_now("p.1", {"kind": "presence"})
    realtime.publish_committed("t.1", {"kind": "message"})
    await asyncio.sleep(0.01)
    # then both went through the one queue, in order
    assert [topic for batch in batches for topic in batch] == ["p.1", "t.1"]
    realtime._publisher.task.cancel()


async def test_the_publisher_stops_when_cancelled_even_if_the_transport_swallows_it(
    monkeypatch,
):
    # given a transport that turns cancellation into an error it logs (as a Redis
    # client can), busy with a batch
    sending = asyncio.Event()

    async def swallowing(items):
        sending.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass

    monkeypatch.setattr(realtime, "_send", swallowing)
    monkeypatch.setattr(realtime, "_publisher", None)
    realtime.register_process_loop(asyncio.get_running_loop())
    realtime.publish_committed("t.1", {"kind": "message"})
    await sending.wait()
    # when the loop shuts down and cancels it
    task = realtime._publisher.task
    task.cancel()
    # then it ends instead of waiting for the next event for ever
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
