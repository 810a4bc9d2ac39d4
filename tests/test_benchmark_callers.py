"""The capacity benchmark's callers stand in for people on other machines: their packets must
leave on time however busy the worker makes this one (see benchmarks/capacity.py)."""

import asyncio
import ctypes
import os
import threading

import pytest

from benchmarks import capacity

pytestmark = pytest.mark.unit

PR_SET_NAME = 15


def test_only_the_callers_send_threads_run_realtime():
    if not capacity.may_run_realtime():
        pytest.skip("real-time priority is not allowed here (needs root or CAP_SYS_NICE)")
    libc = ctypes.CDLL(None, use_errno=True)
    tids: dict[str, int] = {}
    named, stop = threading.Barrier(3), threading.Event()

    def thread(name: str) -> None:  # named as WebRTC names its threads (not Python's name)
        libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
        tids[name] = threading.get_native_id()
        named.wait()
        stop.wait()

    threads = [threading.Thread(target=thread, args=(n,)) for n in ("network_thread", "tokio")]
    for t in threads:
        t.start()
    named.wait()

    async def one_pass() -> None:
        sending = asyncio.create_task(capacity.send_on_time())
        await asyncio.sleep(0.2)
        sending.cancel()

    try:
        asyncio.run(one_pass())
        assert os.sched_getscheduler(tids["network_thread"]) == os.SCHED_FIFO
        assert os.sched_getscheduler(tids["tokio"]) == os.SCHED_OTHER
    finally:
        stop.set()
        for t in threads:
            t.join()
