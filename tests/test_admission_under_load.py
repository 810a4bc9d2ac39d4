"""A worker's threads' wait for a core, read under real load (busy loops at the worker's
priority and at nice 19): the reading that turns a new call down. The admission's logic around
the reading is in tests/test_admission.py; this waits out the reading's 2 s window four times,
so it runs in the slow tier."""

import os
import subprocess
import sys
import time

import pytest

from agent import capacity, config

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # it loads every core


def busy_loops(n: int, nice: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(nice)
        )
        for _ in range(n)
    ]


def readings(wait: capacity.CpuWait, seconds: float) -> list[float]:
    """The wait, sampled as often as a worker's load reports do, for `seconds`."""
    values, deadline = [], time.time() + seconds
    while time.time() < deadline:
        values.append(wait())
        time.sleep(0.5)
    return values


def settled(wait: capacity.CpuWait) -> float:
    """The wait once its window holds only what came after the call."""
    return readings(wait, wait.WINDOW_S + 1.0)[-1]


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="no schedstat: not Linux")
def test_a_worker_turns_new_calls_down_when_its_own_threads_wait_for_a_core_not_the_machines():
    """A busy loop stands for a worker that wants a core. A build at nice 19 next door keeps
    every core busy (the machine's pressure rises) but makes it wait for nothing: new calls
    are taken. The same load at the worker's own priority makes it wait: for a few tenths of a
    second that is a spike, not load; when it stays, a new call is turned down, while the first
    call and a call coming back after a crash are taken."""
    admission = capacity.Admission(
        max_calls=5, pressure_limit_percent=config.Settings().cpu_pressure_limit
    )
    worker = busy_loops(1, nice=0)[0]
    admission.pressure = capacity.CpuWait(worker.pid)
    hogs = []
    try:
        assert settled(admission.pressure) < admission.limit  # alone, it has its core
        hogs = busy_loops(2 * os.cpu_count(), nice=19)
        wait = settled(admission.pressure)
        assert wait < admission.limit, wait
        assert admission.takes(calls=1, room_age=1.0, pressure=wait)
        for hog in hogs:
            hog.kill()
            hog.wait()
        # that load at the worker's own priority for a few tenths of a second, as the spike of
        # a call's start-up: the median of the window is not moved
        hogs = busy_loops(2 * os.cpu_count(), nice=0)
        time.sleep(0.3)
        for hog in hogs:
            hog.kill()
            hog.wait()
        spike = readings(admission.pressure, admission.pressure.WINDOW_S + 1.0)
        assert max(spike) < admission.limit, spike
        # and for good: the worker waits
        hogs = busy_loops(2 * os.cpu_count(), nice=0)
        wait = settled(admission.pressure)
        assert wait >= max(admission.limit, 0.5), wait
        assert not admission.takes(calls=1, room_age=1.0, pressure=wait)  # a new call
        assert admission.takes(calls=0, room_age=1.0, pressure=wait)  # the first call
        assert admission.takes(calls=4, room_age=60.0, pressure=wait)  # back after a crash
    finally:
        for process in [worker, *hogs]:
            process.kill()
            process.wait()
    assert admission.pressure() is None  # the worker has ended: nothing to read
