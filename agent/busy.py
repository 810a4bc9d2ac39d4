"""The answer a caller gets beyond capacity: "all agents are busy", spoken and written in the
room by the worker itself, the way any LiveKit frontend hears and reads an agent.

A worker that will not take a call (agent/capacity.py) turns its job down as done
(`reject(terminate=True)`: livekit-server marks it finished and offers it to no other worker),
and its own process joins the room as an agent participant (a token it signs with the
project's key pair, kind `agent`), waits until the caller has subscribed to its audio track,
then:

- joins with the attribute `busy` set (the project's page and `python -m agent call` tell a
  busy answer from a served call by it), then sets `lk.agent.state` to `speaking`,
- sends the message on `lk.transcription` with the attributes AgentSession's transcription
  output sends (`lk.segment_id`, `lk.transcribed_track_id` = its audio track, and
  `lk.transcription_final` in the stream's trailer),
- plays the message, rendered once at worker start by the local TTS (Hibari in English,
  espeak-ng in the other languages), and leaves.

No call process is taken from the pool and no model runs per busy call: the cost is one WebRTC
connection in the worker's process for a few seconds, at most AT_ONCE at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

import numpy as np
from livekit import api, rtc

from . import config
from .errors import ConfigError

logger = logging.getLogger("agent.busy")

# the built-in message, by language; BUSY_MESSAGE replaces it
MESSAGES = {
    "en": "All agents are busy. Please try again later.",
    "de": "Alle Agenten sind besetzt. Bitte später noch einmal versuchen.",
    "es": "Todos los agentes están ocupados. Inténtelo más tarde.",
    "fr": "Tous les agents sont occupés. Réessayez plus tard.",
    "it": "Tutti gli agenti sono occupati. Riprova più tardi.",
    "nl": "Alle agenten zijn bezet. Probeer het later opnieuw.",
    "pt": "Todos os agentes estão ocupados. Tente mais tarde.",
}
BUSY_ATTRIBUTE = "busy"  # "true" on the agent participant that answers busy
STATE_ATTRIBUTE = "lk.agent.state"
# busy answers at once, more wait their turn: each spent 0.7 CPU-s of the worker process over
# ~5 s (benchmarks.busy, a loaded machine), so 4 take at most ~0.6 core from the calls
AT_ONCE = 4
CALLER_WAIT_S = 10.0  # for the caller to join and subscribe; a dispatch may precede its join
FRAME_MS = 100


@dataclass(frozen=True)
class Message:
    language: str
    text: str
    pcm: np.ndarray  # int16 mono
    sample_rate: int


def default_language(plan: config.Plan) -> str:
    """BUSY_LANGUAGE, else the worker's language if a local voice speaks it, else English."""
    if plan.settings.busy_language:
        return plan.settings.busy_language
    language = _base(plan.language)
    try:
        _voice(language)
    except ConfigError:  # e.g. `multi`
        return "en"
    return language


def messages(plan: config.Plan) -> dict[str, str]:
    """The text to render per language: BUSY_MESSAGE in default_language(), or the built-in
    messages (only BUSY_LANGUAGE's when it is set)."""
    language, settings = default_language(plan), plan.settings
    if settings.busy_message:
        return {language: settings.busy_message}
    if settings.busy_language:
        if language not in MESSAGES:
            raise ConfigError(
                f"BUSY_LANGUAGE={language}: no built-in busy message in it (built in: "
                f"{', '.join(MESSAGES)}); set BUSY_MESSAGE to the text to say"
            )
        return {language: MESSAGES[language]}
    return dict(MESSAGES)


def check(plan: config.Plan) -> None:
    """At startup: every busy message has a local voice (ConfigError otherwise)."""
    if plan.settings.busy_answer:
        for language in messages(plan):
            _voice(language)


def _base(language: str) -> str:
    return language.split("-")[0].lower()


def _voice(language: str) -> config.Descriptor:
    return config.parse("tts", "local/auto", "BUSY_LANGUAGE", language, "BUSY_LANGUAGE")


async def render(plan: config.Plan) -> dict[str, Message]:
    """Every busy message as audio, by the local TTS (once, at worker start)."""
    rendered = {}
    for language, text in messages(plan).items():
        tts = config.build(_voice(language), plan)
        frame = await tts.synthesize(text).collect()
        pcm = np.frombuffer(frame.data, np.int16).copy()
        rendered[language] = Message(language, text, pcm, frame.sample_rate)
    return rendered


class Answerer:
    """Answers the calls the worker does not take, from the worker's own process."""

    def __init__(self, plan: config.Plan) -> None:
        self.plan, self.settings = plan, plan.settings
        self.default = default_language(plan)
        self._messages: asyncio.Task[dict[str, Message]] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()

    def prepare(self) -> None:
        """Render the messages in the background (the worker's loop is running)."""
        self._messages = asyncio.ensure_future(render(self.plan))
        self._slots = asyncio.Semaphore(AT_ONCE)

    def message(self, rendered: dict[str, Message], caller_language: str) -> Message:
        """The caller's language's message, else the worker's (BUSY_LANGUAGE: always it)."""
        if self.settings.busy_language or self.settings.busy_message:
            return rendered[self.default]
        return rendered.get(_base(caller_language)) or rendered.get(self.default, rendered["en"])

    def answer(self, room: str, metadata: str) -> None:
        """Answer the call in `room` (the dispatch's `metadata` may name its language)."""
        task = asyncio.create_task(self._answer(room, metadata))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _token(self, room: str) -> str:
        s = self.settings
        return (
            api.AccessToken(s.livekit_api_key, s.livekit_api_secret.get_secret_value())
            .with_identity(f"agent-busy-{uuid.uuid4().hex[:8]}")
            .with_name(s.agent_name)
            .with_kind("agent")
            .with_attributes(
                {
                    "lk.agent.name": s.agent_name,
                    STATE_ATTRIBUTE: "initializing",
                    BUSY_ATTRIBUTE: "true",
                }
            )
            .with_grants(
                api.VideoGrants(room_join=True, room=room, agent=True, can_update_own_metadata=True)
            )
            .to_jwt()
        )

    async def _answer(self, room_name: str, metadata: str) -> None:
        assert self._messages and self._slots, "prepare() runs at worker start"
        rendered = await self._messages
        async with self._slots:
            room = rtc.Room()
            try:
                await room.connect(self.settings.livekit_url, self._token(room_name))
                caller = await asyncio.wait_for(_caller(room), CALLER_WAIT_S)
                message = self.message(rendered, _language(caller, metadata))
                await _say(room, message)
                logger.info("told the caller in room %s that all agents are busy", room_name)
            except Exception as e:  # the caller left, or the room closed: nothing more to do
                logger.warning("could not tell room %s that all agents are busy: %r", room_name, e)
            finally:
                await room.disconnect()


async def _caller(room: rtc.Room) -> rtc.RemoteParticipant:
    """The first participant that is not an agent (it may join after the dispatch)."""
    joined = asyncio.Event()
    room.on("participant_connected", lambda _: joined.set())
    while True:
        for p in room.remote_participants.values():
            if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return p
        joined.clear()
        await joined.wait()


def _language(caller: rtc.RemoteParticipant, metadata: str) -> str:
    """The call's language as a call would take it: the caller's `language` attribute, else
    the dispatch metadata's `language`."""
    if caller.attributes.get("language"):
        return caller.attributes["language"]
    try:
        return str(json.loads(metadata or "{}").get("language") or "")
    except (json.JSONDecodeError, AttributeError):
        return ""


async def _say(room: rtc.Room, message: Message) -> None:
    source = rtc.AudioSource(message.sample_rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("busy", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await room.local_participant.publish_track(track, options)
    # audio sent before it would be lost; a caller who left never subscribes
    await asyncio.wait_for(publication.wait_for_subscription(), CALLER_WAIT_S)
    local = room.local_participant
    await local.set_attributes({STATE_ATTRIBUTE: "speaking"})
    # one segment, final at once: the text shows as the audio starts
    writer = await local.stream_text(
        topic="lk.transcription",
        attributes={
            "lk.transcription_final": "false",
            "lk.transcribed_track_id": publication.sid,
            "lk.segment_id": f"SG_{uuid.uuid4().hex[:12]}",
        },
    )
    await writer.write(message.text)
    await writer.aclose(
        attributes={"lk.transcription_final": "true", "lk.transcribed_track_id": publication.sid}
    )
    step = message.sample_rate * FRAME_MS // 1000
    for start in range(0, len(message.pcm), step):
        chunk = message.pcm[start : start + step]
        await source.capture_frame(
            rtc.AudioFrame(chunk.tobytes(), message.sample_rate, 1, len(chunk))
        )
    await source.wait_for_playout()
    await local.set_attributes({STATE_ATTRIBUTE: "idle"})
