"""Push-to-talk (TURN_DETECTION=manual): the caller decides when a turn starts and ends.

The agent registers LiveKit RPC methods that the page's hold-to-talk button calls (the pattern
of LiveKit's push-to-talk example): `start_turn` interrupts the agent and opens the microphone,
`end_turn` closes it and commits the turn with `session.commit_user_turn()`, `cancel_turn`
throws the turn away. Between turns the agent hears nothing, but for the last PRE_ROLL_S of the
microphone (`PreRoll`): a caller starts talking as the button goes down, and the press travels
as an RPC apart from the audio, so the first word would otherwise be cut. In `console` mode the
space bar does the same (a terminal has no key-release event, so it toggles: press to talk,
press again to send).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice import io

from .audio import SPEECH_RMS, float_mono, rms

logger = logging.getLogger("agent.push_to_talk")

METHODS = ("start_turn", "end_turn", "cancel_turn")
MODE_ATTRIBUTE = "turn_detection"  # the agent's attribute: the page shows the button if "manual"
CONSOLE_KEY = " "
# After a release the turn is committed this much later: the last word is still on its way
# (the RPC outruns the audio, which waits in jitter buffers), and the STT hears it out. Cut
# right after its last word, Moonshine wrote "…tomorrow morning" as "…more, more," in 5 of 6
# turns at 0.15 s; at 0.35 s the line is ended by its own 0.2 s of quiet first (0 of 8).
RELEASE_GRACE_S = 0.35
PRE_ROLL_S = 0.5  # audio from before the press that a turn starts with, if it holds speech
# and the quiet kept ahead of that speech: fed half a second of silence before the words,
# Moonshine garbled their end ("…for two at 7:00 p")
PRE_ROLL_LEAD_S = 0.1
# after a release, audio still arriving is the end of the turn just sent, not the start of the
# next: it is not kept for the next pre-roll (else its last word would be heard twice)
LATE_TAIL_S = 0.3


class PreRoll(io.AudioInput):
    """The session's microphone behind the button. Up: the newest PRE_ROLL_S of audio is held
    back. Down: the held audio comes first, then the live audio. LiveKit opens and closes it
    (on_attached/on_detached) through `session.input.set_audio_enabled`, so the session knows
    the microphone is off between turns (its commit flushes the STT); the room's stream under
    it stays attached, or there would be nothing to hold."""

    def __init__(self, source: io.AudioInput) -> None:
        super().__init__(label="PushToTalk", source=source)
        self.open = False
        self._held: deque[rtc.AudioFrame] = deque()
        self._held_s = 0.0  # their duration
        self._keep_after = 0.0  # monotonic time before which arriving audio is a late tail

    async def __anext__(self) -> rtc.AudioFrame:
        while True:
            if self.open and self._held:
                return self._pop()
            frame = await self.source.__anext__()
            if self.open and self._held:  # pressed while this frame was awaited
                self._hold(frame)
                return self._pop()
            if self.open:
                return frame
            if time.monotonic() >= self._keep_after:
                self._hold(frame)
                while self._held_s > PRE_ROLL_S:
                    self._pop()

    def _hold(self, frame: rtc.AudioFrame) -> None:
        self._held.append(frame)
        self._held_s += frame.duration

    def _pop(self) -> rtc.AudioFrame:
        frame = self._held.popleft()
        self._held_s -= frame.duration
        return frame

    def on_attached(self) -> None:
        self.source.on_attached()
        self.open = True
        loud = [i for i, f in enumerate(self._held) if rms(float_mono(f)) >= SPEECH_RMS]
        quiet_lead = sum(f.duration for f in list(self._held)[: loud[0]]) if loud else 0.0
        while self._held and (not loud or quiet_lead > PRE_ROLL_LEAD_S):
            quiet_lead -= self._pop().duration

    def on_detached(self) -> None:  # the source stays attached
        self.open = False
        self._held.clear()
        self._held_s = 0.0
        self._keep_after = time.monotonic() + LATE_TAIL_S


class PushToTalk:
    def __init__(self, session: AgentSession) -> None:
        self.session = session
        self.talking = False
        self.releasing = False  # released, the last audio still arriving (RELEASE_GRACE_S)
        session.input.set_audio_enabled(False)  # heard only while the button is held
        if session.input.audio is not None:
            source = session.input.audio
            session.input.audio = PreRoll(source)  # detaches the source: attach it again
            source.on_attached()

    def start_turn(self) -> None:
        # a reply that may not be interrupted (ALLOW_INTERRUPTIONS=false) plays on
        with contextlib.suppress(RuntimeError):
            self.session.interrupt()
        if not self.releasing:  # pressed again right after a release: the same turn goes on
            self.session.clear_user_turn()
        self.session.input.set_audio_enabled(True)
        self.talking = True

    async def end_turn(self) -> None:
        if not self.talking:  # a release without a press (a second pointerup): nothing to send
            return
        self.talking, self.releasing = False, True
        await asyncio.sleep(RELEASE_GRACE_S)  # the last word is still on its way
        self.releasing = False
        if self.talking:  # pressed again meanwhile: the turn goes on
            return
        self.session.input.set_audio_enabled(False)
        # the local STT flushes on request; a cloud STT gets up to 2 s for its final transcript
        self.session.commit_user_turn(transcript_timeout=2.0)

    def cancel_turn(self) -> None:
        self.session.input.set_audio_enabled(False)
        self.session.clear_user_turn()
        self.talking = False

    async def toggle(self) -> None:
        if self.talking:
            await self.end_turn()
        else:
            self.start_turn()


async def enable(session: AgentSession, room: rtc.Room) -> PushToTalk:
    """Register the RPC methods on the agent's participant and say so in its attributes."""
    ptt = PushToTalk(session)
    for name in METHODS:
        room.local_participant.register_rpc_method(name, _handler(ptt, name))
    await room.local_participant.set_attributes({MODE_ATTRIBUTE: "manual"})
    return ptt


def _handler(ptt: PushToTalk, name: str):
    async def handle(data: rtc.RpcInvocationData) -> str:
        logger.info("push-to-talk: %s from %s", name, data.caller_identity)
        result = getattr(ptt, name)()
        if asyncio.iscoroutine(result):
            await result
        return "ok"

    return handle


class _ConsoleKey:
    """The console's push-to-talk, once its session runs (there is one session per console)."""

    ptt: PushToTalk | None = None
    loop: asyncio.AbstractEventLoop | None = None


def install_console_key() -> None:
    """`console` (audio mode): the space bar starts a turn, and sends it when pressed again.

    LiveKit's console reads keys in a thread of its own with `readkey` of its CLI module; it is
    wrapped here, before that thread starts (a read already under way would not see the
    wrapper), so the space bar reaches push-to-talk and every other key the console. `_legacy`
    is private (checked on 1.8.9 by tests/test_livekit_hooks.py)."""
    from livekit.agents.cli import _legacy

    read = _legacy.readkey

    def readkey() -> str:
        while True:
            key = read()
            console = _legacy.AgentsConsole.get_instance()
            ptt, loop = _ConsoleKey.ptt, _ConsoleKey.loop
            if key != CONSOLE_KEY or ptt is None or loop is None or console.console_mode != "audio":
                return key
            was_talking = ptt.talking  # before the loop toggles it
            asyncio.run_coroutine_threadsafe(ptt.toggle(), loop)
            logger.info("push-to-talk: %s", "sent" if was_talking else "talking (space to send)")

    _legacy.readkey = readkey


def enable_console_key(session: AgentSession) -> PushToTalk:
    """Let the space bar (install_console_key) drive this console session's turns."""
    _ConsoleKey.ptt, _ConsoleKey.loop = PushToTalk(session), asyncio.get_running_loop()
    logger.info("push-to-talk: press space to talk, space again to send")
    return _ConsoleKey.ptt
