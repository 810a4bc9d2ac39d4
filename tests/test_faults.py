"""Faults end cleanly (issue 33): livekit-server killed mid-call and started again. The old
call's job ends within a bounded time (agent/lost_calls.py) and frees its slot, so that a worker
with a single slot answers the next call on the restarted server; the server's log keeps what
came before the restart."""

from __future__ import annotations

import asyncio
import re
import time
import wave

import numpy as np
import pytest

from tests import browser
from tools import stack
from tools.caller import SAMPLE_RATE, AgentsBusyError, Caller

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
        stack.stop(worker.process, server.process)


async def greeted_after_start(page, attempts: int = 5) -> bool:
    """Start until the agent greets. The old call's slot is free once its job ended, but the
    server hears so only with the worker's next status update: until then a call is told busy
    (or not answered), the page says so in its error line and leaves, and Start calls again."""
    for _ in range(attempts):
        await page.click("#start")
        await page.wait_for_function(
            f"""() => document.getElementById('error').textContent !== '' ||
                ({browser.TRANSCRIPT_JS})().some(l => l.speaker === 'agent' && l.final)""",
            timeout=60_000,
        )
        if await page.text_content("#error") == "":
            return True
        await page.wait_for_function(
            "() => document.getElementById('state').textContent === 'disconnected'"
        )
    return False


async def test_the_page_says_the_call_ended_when_livekit_server_dies(tmp_path):
    """The browser's side of the same fault: the page's error line says the call ended (it does
    not sit in "reconnecting"), and Start gets a new call answered on the restarted server."""
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as w:  # a quiet fake microphone: no turns to take
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.zeros(SAMPLE_RATE, np.int16).tobytes())
    server = stack.start_server("livekit-server-pagefault")
    worker = stack.start_worker(server, {"MAX_CALLS": "1"}, name="worker-pagefault")
    try:
        async with (
            browser.page_server(server.url, worker.agent_name) as url,
            browser.chromium(*browser.microphone(silence, once=False)) as page,
        ):
            await page.goto(f"{url}/#key={browser.KEY}")
            await browser.join_with_agent(page)
            server.process.kill()  # kill -9, mid-call
            server.process.wait()
            killed = time.monotonic()
            server = stack.start_server("livekit-server-pagefault", ports=server.ports)
            await page.wait_for_function(
                "() => /the call ended/.test(document.getElementById('error').textContent)",
                timeout=90_000,
            )
            print(f"the page said the call ended {time.monotonic() - killed:.1f} s after the kill")
            await page.wait_for_function(
                "() => document.getElementById('state').textContent === 'disconnected'"
            )
            # a new call on the restarted server, once the worker is registered there again
            stack.wait_for(
                lambda: worker.output().count("registered worker") >= 2, 60, "the worker's return"
            )
            assert await greeted_after_start(page, attempts=8), (
                "8 Starts after the restart, none answered"
            )
    finally:
        stack.stop(worker.process, server.process)
