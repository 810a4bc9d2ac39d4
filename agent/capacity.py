"""How many calls a worker takes, and what a caller beyond them gets (docs/capacity.md). Two
limits, whichever is reached first:

- MAX_CALLS calls, calibrated by `benchmarks.capacity` on the machine the worker runs on.
- The worker's CPU: while its threads have waited for a core more than CPU_PRESSURE_LIMIT
  percent of the last 2 s (CpuWait), the worker takes no new call. The same code costs 3-4x
  more CPU on a slow or crowded machine than on the one MAX_CALLS was calibrated on (measured:
  a call 0.12 cores on one day, 0.41-0.48 on another), and there the calls in progress would
  lose their latency long before MAX_CALLS.

A call beyond them is answered "busy" in the room (agent/busy.py, BUSY_ANSWER), so the worker
must still be offered it: livekit-server offers a call only to a worker whose reported load is
under its `agents.target_load` (0.7 by default, 1.0 in the shipped configs). The worker reports
calls / MAX_CALLS scaled to FULL_LOAD, under both; the server's choice among workers (weighted
by 1 - load) still prefers the emptier ones. With BUSY_ANSWER=false the load is full at 1.0, as
LiveKit's default, and a call beyond capacity is not offered (the caller waits in silence).

Whatever the pressure, a worker with no call takes one (a busy build next door must not turn
away every caller), and below MAX_CALLS a call in progress is taken back: a dispatch into a
room older than NEW_CALL_S is a call whose process or worker died (agent/recovery.py,
services/redispatch.py), and an admitted call is not dropped to keep the others fast.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

import psutil
from livekit.agents import AgentServer, JobRequest

from .busy import Answerer

logger = logging.getLogger("agent.capacity")

PRESSURE_FILE = Path("/proc/pressure/cpu")
# a new call's room is created at most seconds before its dispatch (the page, the caller, the
# React starter's room config); a recovered call's caller has been talking in it for longer
NEW_CALL_S = 5.0
# the load a full worker reports while it answers "busy": under LiveKit's default target_load
# (0.7), so that the server still offers it the calls it will answer busy
FULL_LOAD = 0.5


def cpu_pressure() -> float | None:
    """The machine's CPU pressure: the share of the last 10 s in which some runnable thread
    waited for a core, 0-1; None where the kernel has no PSI (not Linux, or CONFIG_PSI off)."""
    try:
        some = PRESSURE_FILE.read_text().split()  # "some avg10=11.30 avg60=… total=…"
    except OSError:
        return None
    return float(some[1].removeprefix("avg10=")) / 100


def _run_queue_waits(pids: list[int]) -> dict[int, int]:
    """Nanoseconds each thread of these processes has waited on a run queue for a core, by
    thread id (/proc/<pid>/task/<tid>/schedstat: on-CPU time, run-queue wait, timeslices)."""
    waits = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:  # the process has ended
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    waits[int(tid)] = int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return waits


def _weighted_median(values: list[tuple[float, float]]) -> float:
    """The median of (value, weight) pairs: the value at half their total weight."""
    values.sort()
    half, seen = sum(w for _, w in values) / 2, 0.0
    for value, weight in values:
        seen += weight
        if seen >= half:
            return value
    return 0.0


class CpuWait:
    """The worker's own CPU pressure: how long its threads (its calls' processes included)
    waited for a core, in thread-seconds per second (0.25: a quarter of a thread always
    waiting). The median over the last WINDOW_S of the rates between samples (every load report,
    each 0.5 s, and every call request): a call's start-up is a spike of a few tenths of a
    second (measured: the waits of 1-2 idle calls, 10-20 %, rose to 30-54 % for 0.3 s as the
    next one joined) that a mean over the window kept for 2 s, turning away the callers behind
    it; a load that stays shows in half the window.

    Its own waits, not the machine's (/proc/pressure/cpu): there a build at nice 19, or the
    test callers next door, wait too, but they slow no call down, and a worker reading them
    turned callers away with its calls at a single call's latency (measured: 1 call at 25-36 %
    machine pressure refused a second). Linux only (None elsewhere)."""

    WINDOW_S = 2.0

    def __init__(self, pid: int | None = None) -> None:
        self._root = psutil.Process(pid)
        self._last: dict[int, int] | None = None  # run-queue wait by thread, at the last sample
        self._total = 0  # ns waited by the worker's threads since the first sample
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()  # LiveKit runs load_fnc on a thread, requests on the loop

    def __call__(self) -> float | None:
        try:
            pids = [self._root.pid] + [p.pid for p in self._root.children(recursive=True)]
        except psutil.Error:
            return None
        waits = _run_queue_waits(pids)
        if not waits:
            return None
        now = time.monotonic()
        with self._lock:
            if self._last is not None:
                # a thread new since the last sample waited all its wait since then
                self._total += sum(max(w - self._last.get(t, 0), 0) for t, w in waits.items())
            self._last = waits
            self._samples.append((now, self._total))
            while len(self._samples) > 1 and now - self._samples[1][0] >= self.WINDOW_S:
                self._samples.popleft()  # keep one sample at least WINDOW_S old
            samples = list(self._samples)
        rates = [
            ((b - a) / 1e9 / (u - t), u - t)
            for (t, a), (u, b) in itertools.pairwise(samples)
            if u > t
        ]
        return _weighted_median(rates) if now - samples[0][0] >= 0.5 else 0.0


def saturated(calls: int, pressure: float | None, limit: float) -> bool:
    """Whether a worker running `calls` should turn a new call down at CPU `pressure` (0-1);
    a `limit` of 0 turns the pressure limit off."""
    return bool(calls and limit and pressure is not None and pressure >= limit)


class Admission:
    """The worker's `load_fnc` and its calls' `on_request`."""

    def __init__(
        self, max_calls: int, pressure_limit_percent: float, busy: Answerer | None = None
    ) -> None:
        self.max_calls = max_calls
        self.limit = pressure_limit_percent / 100
        self.busy = busy  # who answers the calls not taken (None: they are turned down)
        self.full_load = FULL_LOAD if busy else 1.0
        self.accepting = 0  # calls accepted and not yet running (not in server.active_jobs)
        self.pressure = CpuWait()

    def load(self, server: AgentServer) -> float:
        self.pressure()  # a sample every load report: the window holds the last 2 s
        return self.full_load * min(len(server.active_jobs) / self.max_calls, 1.0)

    def takes(self, calls: int, room_age: float, pressure: float | None) -> bool:
        """Whether to take a call into a room `room_age` seconds old, with `calls` running."""
        if calls >= self.max_calls:
            return False
        return room_age >= NEW_CALL_S or not saturated(calls, pressure, self.limit)

    def on_request(self, server: AgentServer):
        async def request(req: JobRequest) -> None:
            calls = len(server.active_jobs) + self.accepting
            pressure = self.pressure()
            if self.takes(calls, time.time() - req.room.creation_time, pressure):
                self.accepting += 1
                try:
                    await req.accept()
                finally:
                    self.accepting -= 1
                return
            why = (
                f"MAX_CALLS {self.max_calls} calls running"
                if calls >= self.max_calls
                else f"CPU pressure {100 * (pressure or 0):.0f} % >= CPU_PRESSURE_LIMIT "
                f"{100 * self.limit:g} % with {calls} calls running"
            )
            if self.busy:
                logger.warning("call in room %s answered busy: %s", req.room.name, why)
                # done, for the server: no other worker is offered it
                await req.reject(terminate=True)
                self.busy.answer(req.room.name, req.job.metadata)
            else:
                logger.warning("call in room %s turned down: %s", req.room.name, why)
                await req.reject(terminate=False)  # another worker may have cores to spare

        return request
