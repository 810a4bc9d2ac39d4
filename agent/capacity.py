"""How many calls a worker takes. Two limits, whichever is reached first:

- MAX_CALLS calls, calibrated by `benchmarks.capacity` on the machine the worker runs on. The
  worker reports its load to livekit-server as calls / MAX_CALLS, full at 1.0, where the
  shipped server config stops dispatching to it (`agents.target_load: 1.0`).
- The machine's CPU: while some thread has waited for a core more than CPU_PRESSURE_LIMIT
  percent of the last 10 s, or of the last 2 s (Linux's pressure stall information), the
  worker turns new calls down at their request, and livekit-server offers them to another
  worker, or to none (the caller hears "busy"). The same code costs 3-4x more CPU on a slow or crowded machine than on
  the one MAX_CALLS was calibrated on (measured: a call 0.12 cores on one day, 0.41-0.48 on
  another), and there the calls in progress would lose their latency long before MAX_CALLS.

Whatever the pressure, a worker with no call takes one (a busy build next door must not turn
away every caller), and a call in progress is always taken back: a dispatch into a room older
than NEW_CALL_S is a call whose process or worker died (agent/recovery.py, agent/redispatch.py),
and an admitted call is not dropped to keep the others fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from livekit.agents import AgentServer, JobRequest

logger = logging.getLogger("agent.capacity")

PRESSURE_FILE = Path("/proc/pressure/cpu")
# a new call's room is created at most seconds before its dispatch (the page, the caller, the
# React starter's room config); a recovered call's caller has been talking in it for longer
NEW_CALL_S = 5.0


def _some() -> dict[str, str] | None:
    try:
        some = PRESSURE_FILE.read_text().splitlines()[0]  # "some avg10=11.30 avg60=… total=…"
    except (OSError, IndexError):
        return None
    return dict(part.split("=", 1) for part in some.split()[1:])


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some runnable thread waited for a core, 0-1; None
    where the kernel has no PSI (not Linux, or CONFIG_PSI off)."""
    some = _some()
    return None if some is None else float(some["avg10"]) / 100


class RecentPressure:
    """The same share over the last WINDOW_S, from the kernel's stall counter: the 10 s
    average lags, and callers arriving 0.5 s apart were all let in before it rose (4 calls at
    5.4x a single call's latency). Sampled by every load report (each 0.5 s)."""

    WINDOW_S = 2.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()  # LiveKit runs load_fnc on a thread, requests on the loop

    def __call__(self) -> float | None:
        some = _some()
        if some is None:
            return None
        now, total = time.monotonic(), int(some["total"])  # microseconds of stall
        with self._lock:
            while len(self._samples) > 1 and now - self._samples[1][0] >= self.WINDOW_S:
                self._samples.popleft()  # keep one sample at least WINDOW_S old
            self._samples.append((now, total))
            then, before = self._samples[0]
        recent = (total - before) / 1e6 / (now - then) if now - then >= 0.5 else 0.0
        return max(float(some["avg10"]) / 100, min(recent, 1.0))


def saturated(calls: int, pressure: float | None, limit: float) -> bool:
    """Whether a worker running `calls` should turn a new call down at CPU `pressure` (0-1);
    a `limit` of 0 turns the pressure limit off."""
    return bool(calls and limit and pressure is not None and pressure >= limit)


class Admission:
    """The worker's `load_fnc` and its calls' `on_request`."""

    def __init__(self, max_calls: int, pressure_limit_percent: float) -> None:
        self.max_calls = max_calls
        self.limit = pressure_limit_percent / 100
        self.pressure = RecentPressure()

    def load(self, server: AgentServer) -> float:
        self.pressure()  # a sample for the next request's window
        return min(len(server.active_jobs) / self.max_calls, 1.0)

    def takes(self, calls: int, room_age: float, pressure: float | None) -> bool:
        """Whether to take a call into a room `room_age` seconds old, with `calls` running."""
        return room_age >= NEW_CALL_S or not saturated(calls, pressure, self.limit)

    def on_request(self, server: AgentServer):
        async def request(req: JobRequest) -> None:
            calls, pressure = len(server.active_jobs), self.pressure()
            if self.takes(calls, time.time() - req.room.creation_time, pressure):
                await req.accept()
                return
            logger.warning(
                "call in room %s turned down: CPU pressure %.0f %% >= CPU_PRESSURE_LIMIT "
                "%g %% with %d calls running (MAX_CALLS %d)",
                req.room.name,
                100 * (pressure or 0),
                100 * self.limit,
                calls,
                self.max_calls,
            )
            await req.reject(terminate=False)  # another worker may have cores to spare

        return request
