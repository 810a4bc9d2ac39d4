"""Which calls a worker takes: up to MAX_CALLS, and a new one only while its threads get a core
when they want one (their run-queue waits, read under real load in test_admission_under_load.py);
and how the calls it has spend less as the machine's CPU pressure rises (Moonshine's interims)."""

import time
from types import SimpleNamespace

import pytest

from agent import capacity

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


def test_calls_still_starting_count_at_what_calls_have_cost():
    """A call's load shows in the wait seconds after it is taken, and its start-up swamps the
    wait meanwhile: until then the worker counts all the calls at what calls have cost (the
    wait grows with their square), so callers a moment apart are neither all let in nor all
    turned away."""
    admission = capacity.Admission(max_calls=5, pressure_limit_percent=50)
    assert admission.per_call_squared == pytest.approx(0.02)  # nothing learnt: 5 fill the limit
    assert admission.projected(0.3, calls=3) == pytest.approx(0.3)  # none starting: the wait
    admission.per_call_squared = 0.036  # learnt: 3 settled calls waited ~33 %
    admission._taken.append(time.monotonic())  # and one was just taken
    assert admission.projected(1.5, calls=3) == pytest.approx(0.036 * 9)  # a start-up's spike
    assert admission.takes(calls=3, room_age=1.0, pressure=admission.projected(1.5, 3))
    assert admission.projected(0.3, calls=4) == pytest.approx(0.036 * 16)
    assert not admission.takes(calls=4, room_age=1.0, pressure=admission.projected(0.3, 4))
    admission._settled_wait = 0.7  # a load next door made the settled calls wait
    assert admission.projected(0.3, calls=2) == pytest.approx(0.7)
    admission._taken.clear()
    admission._taken.extend([time.monotonic() - capacity.SETTLE_S - 1] * 2 + [time.monotonic()])
    assert admission.starting() == 1  # calls taken longer ago show in the wait already
    assert admission.projected(None, calls=3) is None  # no schedstat: MAX_CALLS alone


def test_the_factor_is_learnt_from_two_settled_calls_up():
    admission = capacity.Admission(max_calls=5, pressure_limit_percent=50)
    running = SimpleNamespace(active_jobs=[object()])
    admission.pressure = lambda: 0.2  # a lone call, as its neighbours' processes end
    for _ in range(20):
        admission.load(running)
    assert admission.per_call_squared == pytest.approx(0.02)  # nothing learnt
    running.active_jobs.append(object())
    admission.pressure = lambda: 0.16
    for _ in range(20):
        admission.load(running)
    assert admission.per_call_squared == pytest.approx(0.04, abs=0.001)  # 0.16 / 2**2
    assert admission._settled_wait == pytest.approx(0.16)


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
