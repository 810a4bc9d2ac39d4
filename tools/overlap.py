"""A caller who talks over the agent: starts speaking while the agent is audibly speaking (its
greeting, a reply), and what the agent made of it. Used by the overlap tests and the latency
benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np

from agent.plugins.echo import phrases
from tools.caller import Caller, synthesize

# the agent counts as stopped when none of its audio is loud this long after the caller starts
# (LiveKit interrupts after MIN_INTERRUPTION_DURATION of speech, 0.5 s, plus the trip here)
STOP_WITHIN_S = 1.5


@dataclass
class Overlap:
    said: str
    transcript: str  # the caller's final transcripts from when it started, joined
    answered: str  # what the agent's answer repeats ("You said: …" without its prefix)
    interrupted: bool  # the agent fell silent while the caller spoke
    speech_end: float
    first_agent_audio: float | None  # of the answer, after speech_end


async def wait_while_quiet(caller: Caller, timeout: float = 30) -> None:
    """Return once the agent is audibly speaking (a loud slice within the last 0.2 s)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if caller._loud_at and time.time() - caller._loud_at[-1] < 0.2:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the agent never spoke")


async def prompt_a_reply(caller: Caller, text: str, language: str = "en") -> None:
    """Say `text` and return once it is transcribed (its reply is about to play)."""
    before = len(caller.user_finals())
    await caller.speak(synthesize(text, language))
    with contextlib.suppress(asyncio.TimeoutError):
        await caller.wait_for(lambda: len(caller.user_finals()) > before, 30)


async def talk_over(
    caller: Caller,
    text: str,
    language: str = "en",
    lead: float = 0.5,
    pcm: np.ndarray | None = None,
    timeout: float = 30,
) -> Overlap:
    """Wait until the agent speaks, `lead` seconds more, then say `text` over it; wait for the
    agent's answer."""
    pcm = synthesize(text, language) if pcm is None else pcm
    prefix = phrases(language).you_said.split("{}")[0]
    await wait_while_quiet(caller, 60)  # the first time: the agent joins and greets
    await asyncio.sleep(lead)
    users_before = len(caller.user_finals())
    started = time.time()
    speech_end = await caller.speak(pcm)

    def heard() -> list:
        return [t for t in caller.user_finals()[users_before:] if t.at > started]

    def answers() -> list:
        # the answer comes after the caller's transcript (the reply it talked over may be
        # finalized after the caller stopped too: it was paused, then interrupted)
        after = heard()[-1].at if heard() else float("inf")
        return [t for t in caller.agent_finals() if t.at > after and t.text.startswith(prefix)]

    with contextlib.suppress(asyncio.TimeoutError):
        await caller.wait_for(lambda: bool(prefix and answers()), timeout)
    await caller.wait_until_quiet()
    reply = answers()[-1] if answers() else None
    loud = [t for t in caller._loud_at if started + STOP_WITHIN_S < t < speech_end]
    first = next((t for t in caller._loud_at if t > speech_end), None)
    return Overlap(
        said=text,
        transcript=" ".join(t.text for t in heard()),
        answered=reply.text.removeprefix(prefix) if reply else "",
        interrupted=not loud and speech_end - started > STOP_WITHIN_S,
        speech_end=speech_end,
        first_agent_audio=first,
    )
