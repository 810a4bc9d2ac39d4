"""Which calls a worker takes: up to MAX_CALLS, and a new one only while its threads get a core
when they want one (their run-queue waits, read under real load in test_admission_under_load.py);
and how the calls it has spend less as the machine's CPU pressure rises (Moonshine's interims)."""

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

from agent import busy, capacity, config

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


class Request:
    """What on_request reads of LiveKit's JobRequest, and how it answered."""

    def __init__(self, room_age: float, metadata: str = "") -> None:
        self.room = SimpleNamespace(name="call-x", creation_time=time.time() - room_age)
        self.job = SimpleNamespace(metadata=metadata)
        self.answer = ""

    async def accept(self) -> None:
        self.answer = "accepted"

    async def reject(self, terminate: bool = False) -> None:
        self.answer = "done" if terminate else "turned down"


class Busy:
    def __init__(self) -> None:
        self.rooms: list[str] = []

    def answer(self, room: str, metadata: str) -> None:
        self.rooms.append(room)


def decide(admission: capacity.Admission, calls: int, room_age: float = 1.0) -> str:
    server = SimpleNamespace(active_jobs=[object()] * calls)
    req = Request(room_age)
    asyncio.run(admission.on_request(server)(req))
    return req.answer


def test_beyond_capacity_a_call_is_answered_busy_by_a_worker_livekit_still_offers_it_to():
    """livekit-server offers a call only to a worker whose load is under its target_load (0.7
    by default): a full worker that answers busy reports less, and its request ends the
    dispatch (no other worker is offered it) while the worker says "busy" in the room."""
    busy = Busy()
    admission = capacity.Admission(max_calls=2, pressure_limit_percent=0, busy=busy)
    admission.pressure = lambda: None
    full = SimpleNamespace(active_jobs=[object(), object()])
    assert admission.load(full) == capacity.FULL_LOAD < 0.7
    assert decide(admission, calls=1) == "accepted"
    assert decide(admission, calls=2) == "done" and busy.rooms == ["call-x"]
    assert decide(admission, calls=2, room_age=60) == "done"  # a call back after a crash too

    # BUSY_ANSWER=false: full at 1.0, where the server offers it nothing more
    silent = capacity.Admission(max_calls=2, pressure_limit_percent=0)
    silent.pressure = lambda: None
    assert silent.load(full) == 1.0
    assert decide(silent, calls=2) == "turned down"


def test_a_saturated_worker_answers_busy_and_takes_back_a_call_in_progress():
    busy = Busy()
    admission = capacity.Admission(max_calls=5, pressure_limit_percent=50, busy=busy)
    admission.pressure = lambda: 0.9
    assert decide(admission, calls=1) == "done" and busy.rooms == ["call-x"]
    assert decide(admission, calls=1, room_age=60) == "accepted"  # back after a crash
    assert decide(admission, calls=0) == "accepted"  # the first call, whatever the pressure


@pytest.mark.parametrize(
    "env,caller_language,expected",
    [
        ({}, "fr", busy.MESSAGES["fr"]),  # the caller's language
        ({}, "fr-CA", busy.MESSAGES["fr"]),
        ({}, "ja", busy.MESSAGES["en"]),  # no built-in message in it: the worker's language
        ({"LANGUAGE": "de"}, "", busy.MESSAGES["de"]),
        ({"BUSY_LANGUAGE": "es"}, "fr", busy.MESSAGES["es"]),  # always BUSY_LANGUAGE
        ({"BUSY_MESSAGE": "Line busy."}, "fr", "Line busy."),
        ({"BUSY_MESSAGE": "Bezet.", "BUSY_LANGUAGE": "nl"}, "", "Bezet."),
    ],
)
def test_the_busy_message_is_in_the_calls_language_unless_set(env, caller_language, expected):
    plan = config.resolve(config.Settings.from_env(env, dotenv=False))
    texts = busy.messages(plan)
    rendered = {
        lang: busy.Message(lang, text, np.zeros(1, np.int16), 16000) for lang, text in texts.items()
    }
    assert busy.Answerer(plan).message(rendered, caller_language).text == expected


@pytest.mark.parametrize(
    "env,error",
    [
        ({"BUSY_LANGUAGE": "ja"}, "no built-in busy message"),  # espeak speaks it: say what
        ({"BUSY_LANGUAGE": "xx", "BUSY_MESSAGE": "?"}, "no local voice speaks 'xx'"),
    ],
)
def test_a_busy_message_that_cannot_be_said_stops_the_worker_at_startup(env, error):
    with pytest.raises(config.ConfigError, match=error):
        busy.check(config.resolve(config.Settings.from_env(env, dotenv=False)))
    quiet = config.Settings.from_env({**env, "BUSY_ANSWER": "false"}, dotenv=False)
    assert busy.check(config.resolve(quiet)) is None


def test_the_call_language_is_the_callers_attribute_else_the_dispatchs():
    caller = SimpleNamespace(attributes={"language": "it"})
    assert busy._language(caller, '{"language": "fr"}') == "it"
    caller.attributes = {}
    assert busy._language(caller, '{"language": "fr"}') == "fr"
    assert busy._language(caller, "not json") == ""
