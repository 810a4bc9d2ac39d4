"""Which calls a worker takes: up to MAX_CALLS, and a new one only while the machine has a
core to spare (the kernel's CPU pressure figure, read here under real load); and how the calls
it has spend less as that pressure rises (Moonshine's interims)."""

import os
import subprocess
import sys
import time

import pytest

from agent import capacity, config

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "calls,pressure,limit,expected",
    [
        (2, 0.1, 0.4, False),  # cores to spare
        (1, 0.4, 0.4, True),  # at the limit
        (0, 0.9, 0.4, False),  # no call running: one is always taken
        (2, None, 0.4, False),  # no PSI in this kernel: MAX_CALLS alone
        (2, 1.0, 0.0, False),  # CPU_PRESSURE_LIMIT=0: MAX_CALLS alone
    ],
)
def test_a_worker_is_saturated_only_with_a_call_running_and_the_pressure_at_its_limit(
    calls, pressure, limit, expected
):
    assert capacity.saturated(calls, pressure, limit) is expected


@pytest.mark.skipif(capacity.cpu_pressure() is None, reason="this kernel has no PSI")
def test_under_real_cpu_pressure_a_new_call_is_turned_down_and_a_call_in_progress_taken():
    admission = capacity.Admission(
        max_calls=5, pressure_limit_percent=config.Settings().cpu_pressure_limit
    )
    deadline = time.time() + 60  # a quiet machine to start from
    while capacity.cpu_pressure() >= 0.2 and time.time() < deadline:
        time.sleep(0.5)
    # more threads wanting a core than there are cores (at nice 19, as a build next door)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(19))
        for _ in range(2 * os.cpu_count())
    ]
    try:
        # the last 2 s show it before the kernel's 10 s average does
        recent = capacity.RecentPressure()
        deadline = time.time() + 10
        while (now := recent()) < 0.5 and time.time() < deadline:
            time.sleep(0.25)
        assert now >= 0.5 > capacity.cpu_pressure(), (now, capacity.cpu_pressure())
        deadline = time.time() + 30
        while (pressure := capacity.cpu_pressure()) < 0.5 and time.time() < deadline:
            time.sleep(0.5)
        assert pressure >= 0.5, pressure
        assert not admission.takes(
            calls=1, room_age=1.0, pressure=admission.pressure()
        )  # a new call, one running
        assert admission.takes(
            calls=0, room_age=1.0, pressure=admission.pressure()
        )  # the first call
        assert admission.takes(
            calls=4, room_age=60.0, pressure=admission.pressure()
        )  # a call coming back after a crash
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    # and once the machine has cores to spare again, new calls are taken
    deadline = time.time() + 60
    while (
        not admission.takes(calls=1, room_age=1.0, pressure=admission.pressure())
        and time.time() < deadline
    ):
        time.sleep(0.5)
    assert admission.takes(calls=1, room_age=1.0, pressure=admission.pressure()), (
        capacity.cpu_pressure()
    )


@pytest.mark.parametrize(
    "avg10,interval",
    [("3.00", 1.0), ("18.50", 2.0), ("45.00", float("inf"))],
)
def test_moonshine_interims_thin_out_and_stop_as_the_cpu_pressure_rises(
    tmp_path, monkeypatch, avg10, interval
):
    from agent.plugins import moonshine

    psi = tmp_path / "cpu"
    psi.write_text(f"some avg10={avg10} avg60=1.00 avg300=1.00 total=123\n")
    monkeypatch.setattr(capacity, "PRESSURE_FILE", psi)
    monkeypatch.setitem(moonshine._cpu, "at", 0.0)  # read the pressure now
    monkeypatch.setitem(moonshine._cpu, "factor", 1.0)  # and leave no factor to other tests
    assert moonshine.interim_interval(1.0) == interval
