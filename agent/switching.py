"""The plan of one call, and switching its STT live.

A call runs on the worker's plan (defaults < .env < environment < cli, resolved once when the
worker started), with the JSON metadata of its dispatch (`{"stt": "cartesia/ink-whisper:de",
"language": "de"}`) laid over it once when the call starts, and the caller's participant
attributes `stt` and `language` (config.LAYER_KEYS) laid over that once per change: each
layer gives a new config.Plan, which is all the call reads.

When the caller changes those attributes mid-call, the new plan is resolved by
agent/config/. A valid change reaches the running session without dropping the call: a new
language on the same models goes through `update_options(language=...)` (the live streams
follow it), anything else swaps the STT with `Agent.update_options(stt=...)`, LiveKit's
supported way to replace a component of a running agent. The agent then answers in the new
language: the voice `local/auto` picks for it and a language-taking LLM (the echo) are swapped
in the same way. A refused change is logged in one line and the old STT keeps running. Either way the agent publishes, as its own attributes,
`stt_active` (the STT chain in use) and `stt_error` (the last refusal, removed once a change
succeeds), so the caller's page can show them.

A `multi` call (LANGUAGE=multi, `local/auto:multi`, `deepgram/nova-3:multi`) answers in the
language of each final transcript (SpeechData.language): the voice `local/auto` picks for it
and the echo's words follow turn by turn, starting in catalog.MULTI_START. For the page, the
agent sends each final's language on the LANGUAGE_TOPIC text stream and publishes the language
it answers in as its `answer_language` attribute.
"""

from __future__ import annotations

import asyncio
import json
import logging

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.utils import is_given

from . import catalog, config

logger = logging.getLogger("agent.switching")

ATTRIBUTES = config.LAYER_KEYS["participant"]  # what the caller may set: stt, language
ACTIVE, ERROR = "stt_active", "stt_error"  # what the agent publishes back
ANSWERING = "answer_language"  # the language the agent answers in
# one JSON message per final user transcript: {"text": ..., "language": ...}
LANGUAGE_TOPIC = "transcript_language"


def with_dispatch(base: config.Plan, metadata: str) -> config.Plan:
    """`base` with the dispatch metadata (a JSON object; empty: nothing) laid over it."""
    if not metadata.strip():
        return base
    try:
        values = json.loads(metadata)
    except json.JSONDecodeError as e:
        raise config.ConfigError(
            f"dispatch metadata is not JSON ({e.msg}): pass an object like "
            f'{{"stt": "cartesia/ink-whisper:de"}}'
        ) from None
    if not isinstance(values, dict):
        raise config.ConfigError(
            f'dispatch metadata must be a JSON object like {{"language": "de"}}, not {metadata!r}'
        )
    return base.with_layer("dispatch", values)


def from_attributes(attributes: dict[str, str]) -> dict[str, str]:
    """The settings a participant's attributes choose (empty values choose nothing)."""
    return {k: attributes[k].strip() for k in ATTRIBUTES if attributes.get(k, "").strip()}


def chain_text(plan: config.Plan) -> str:
    return ",".join(str(d) for d in plan.stt)


class LiveSTT:
    """Owns the plan of one call (`plan`, what the session is built from), then follows the
    caller's attributes; `vad` segments audio for a new STT chain's batch members."""

    def __init__(self, worker_plan: config.Plan, metadata: str, vad=None) -> None:
        self.error, self._vad = "", vad
        try:
            self.base = with_dispatch(worker_plan, metadata)
        except config.ConfigError as e:  # the call goes on with the worker's plan
            logger.warning("dispatch metadata refused, using the worker's settings: %s", e)
            self.base, self.error = worker_plan, str(e)
        self.plan = self.base
        self.voice, self.answering = self.plan.tts, self._first_language()
        self._voices: dict[str, object] = {}  # descriptor -> voice, built once per call
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        logger.info("call settings: %s", config.describe(self.plan))

    def follow(self, session: AgentSession, agent: Agent, room: rtc.Room) -> None:
        """Apply the caller's attributes now and whenever they change."""
        self._session, self._agent, self._room = session, agent, room
        room.on("participant_attributes_changed", self._on_attributes_changed)
        room.on("participant_connected", self._schedule)
        session.on("user_input_transcribed", self._on_transcribed)
        for participant in room.remote_participants.values():
            self._schedule(participant)
        self._spawn(self._publish())  # the starting state, before any attribute arrives

    def _on_attributes_changed(self, changed: dict[str, str], participant) -> None:
        if any(k in changed for k in ATTRIBUTES) and isinstance(participant, rtc.RemoteParticipant):
            self._schedule(participant)

    def _schedule(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return
        linked = self._session.room_io.linked_participant
        if linked is not None and linked.identity != participant.identity:
            return  # someone else in the room: only the caller the session listens to counts
        self._spawn(self.apply(from_attributes(participant.attributes)))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def apply(self, values: dict[str, str]) -> str:
        """Switch to the plan `values` (the participant layer) choose; "" or the refusal."""
        async with self._lock:
            try:
                new = self.base.with_layer("participant", values)
                if new.llm.realtime and values:
                    raise config.ConfigError(
                        f"LLM={new.llm} is a realtime model, which hears by itself: "
                        f"the {'/'.join(values)} attribute changes nothing"
                    )
            except config.ConfigError as e:
                self.error = str(e)
                logger.warning("STT change refused, keeping %s: %s", chain_text(self.plan), e)
                await self._publish()
                return self.error
            self._switch(new)
            self._follow_language(new)
            self._follow_turns(new)
            self.plan, self.error = new, ""
            self.voice, self.answering = new.tts, self._first_language()
            logger.info("STT now: %s", config.describe(new))
            await self._publish()
            return ""

    def _switch(self, new: config.Plan) -> None:
        old, options = self.plan, new.settings.stt_options
        if old.stt == new.stt and old.settings.stt_options == options:
            return
        same_models = [d.model.id for d in old.stt] == [d.model.id for d in new.stt]
        languages = {d.variant for d in new.stt}
        current = self._agent.stt if is_given(self._agent.stt) else self._session.stt
        if (
            same_models
            and len(languages) == 1
            and old.settings.stt_options == options
            and hasattr(current, "update_options")
        ):
            current.update_options(language=languages.pop())
        else:
            self._agent.update_options(stt=config.build_stt(new, self._vad))

    def _follow_language(self, new: config.Plan) -> None:
        """The agent answers in the call's language: swap in the voice a new language picked
        (`local/auto`) and rebuild an LLM built for the old language (the echo)."""
        if new.llm.realtime:
            return
        changes = {}
        if new.tts != self.plan.tts:
            changes["tts"] = config.build(new.tts, new)
        plugin = new.llm.model.plugin
        if plugin and plugin.takes_language and new.language != self.plan.language:
            changes["llm"] = config.build(new.llm, new)
        if changes:
            self._agent.update_options(**changes)

    def _follow_turns(self, new: config.Plan) -> None:
        """A new language may end turns with another detector (TURN_DETECTION=auto's choice
        for it, or the fallback for a detector that does not speak it), and other delays."""
        if (new.turn_detection, new.endpointing) == (
            self.plan.turn_detection,
            self.plan.endpointing,
        ):
            return
        handling = config.turn_handling(new)
        self._session.update_options(
            turn_detection=handling["turn_detection"], endpointing_opts=handling["endpointing"]
        )
        logger.info("turns now end by %s", new.turn_detection)

    def _first_language(self) -> str:
        language = self.plan.language
        return catalog.MULTI_START if language == catalog.MULTI else language

    def _on_transcribed(self, ev) -> None:
        """Each final's language to the page; in a `multi` call, the answer's language too.
        Runs before the reply is generated (LiveKit emits the event as the final arrives)."""
        if not (ev.is_final and ev.language and ev.transcript.strip()):
            return
        heard = str(ev.language).split("-")[0]
        if heard == catalog.MULTI:  # an STT that did not say which language it heard
            return
        message = json.dumps({"text": ev.transcript, "language": heard}, ensure_ascii=False)
        self._spawn(self._send_language(message))
        if self.plan.language == catalog.MULTI and heard != self.answering:
            self.answer_in(heard)
            self._spawn(self._publish())

    def answer_in(self, language: str) -> None:
        """Answer in `language` from the next reply: the voice `local/auto` picks for it and
        the echo's words. A voice set by name stays, and so does the current one when no local
        voice speaks `language`."""
        voice = self._voice_for(language)
        if voice is not None and voice != self.voice:
            if str(voice) not in self._voices:
                self._voices[str(voice)] = config.build(voice, self.plan)
            self._agent.update_options(tts=self._voices[str(voice)])
            self.voice = voice
        plugin = self.plan.llm.model.plugin
        if plugin and plugin.takes_language:
            llm = self._agent.llm if is_given(self._agent.llm) else self._session.llm
            llm.update_options(language=language)
        self.answering = language

    def _voice_for(self, language: str) -> config.Descriptor | None:
        settings = self.plan.settings
        text = settings.descriptor("tts")
        model = catalog.MODELS.get(("tts", text.partition(":")[0]))
        if model is None or not model.picks:
            return None
        try:
            return config.parse("tts", text, settings.label("tts"), language)
        except config.ConfigError:
            logger.info("no local voice speaks %r: answering with %s", language, self.voice)
            return None

    async def _send_language(self, message: str) -> None:
        if self._room.isconnected():
            await self._room.local_participant.send_text(message, topic=LANGUAGE_TOPIC)

    async def _publish(self) -> None:
        if self._room.isconnected():
            await self._room.local_participant.set_attributes(
                {ACTIVE: chain_text(self.plan), ERROR: self.error, ANSWERING: self.answering}
            )
