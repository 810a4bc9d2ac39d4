"""Faults end cleanly (issue 33): livekit-server killed mid-call and started again. The old
call's job ends within a bounded time (agent/lost_calls.py) and frees its slot, so that a worker
with a single slot answers the next call on the restarted server; the server's log keeps what
came before the restart."""

from __future__ import annotations

import asyncio
import re

import pytest

from tools import stack
from tools.caller import AgentsBusyError, Caller

pytestmark = pytest.mark.e2e


def call(server: stack.Server, worker: stack.Worker) -> Caller:
    return Caller(server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name)


def test_a_call_ends_when_livekit_server_dies_and_the_next_call_is_answered():
    server = stack.start_server("livekit-server-faults")
    worker = stack.start_worker(server, {"MAX_CALLS": "1"}, name="worker-faults")
    try:

        async def answered_then_server_killed() -> str:
            async with call(server, worker) as caller:
                await caller.wait_for_greeting()
                server.process.kill()  # kill -9, mid-call
                server.process.wait()
                return caller.room_name

        room = asyncio.run(answered_then_server_killed())
        before = server.log.stat().st_size
        restarted = stack.start_server("livekit-server-faults", ports=server.ports)
        assert restarted.since == before  # appended: the first run's lines are still there
        assert "starting LiveKit server" in server.log.read_text()[:before]

        ended = re.compile(rf"call in room {room} ended: (.+) for \d+ s")
        stack.wait_for(lambda: ended.search(worker.output()), 120, "the lost call's end")
        assert ended.search(worker.output()).group(1) in (
            "the caller is gone",
            "the connection to livekit-server is lost",
        )

        async def next_call() -> list:
            # the slot's release reaches the server with the worker's next status update: a
            # call placed before it is turned down as busy, and the caller calls again
            for _ in range(3):
                async with call(restarted, worker) as caller:  # MAX_CALLS=1: the slot is free
                    try:
                        await caller.wait_for_agent(timeout=10)
                    except AgentsBusyError:
                        continue
                    await caller.wait_for_greeting()
                    return caller.agent_finals()
            raise AssertionError("3 calls after the restart, none answered")

        stack.wait_for(
            lambda: worker.output().count("registered worker") >= 2, 60, "the worker's return"
        )
        assert asyncio.run(next_call())
        server = restarted
    finally:
        stack.stop(worker.process)
        stack.stop(server.process)
