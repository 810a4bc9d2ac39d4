"""A caller that joins the agent's room like a person would: it dispatches the agent, speaks
into a real microphone track at real-time pace, and collects what comes back (the transcripts
on `lk.transcription`, and the agent's audio). The end-to-end tests, the latency benchmark
and `python -m agent call` all use it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from livekit import api, rtc

from agent.audio import SPEECH_RMS, resample, to_int16
from agent.errors import ServiceError

SAMPLE_RATE = 48000
# A caller stands for a person on another machine, but runs on this one: its microphone is
# written 100 ms at a time, and the agent's audio read 100 ms at a time (not WebRTC's 10 ms),
# each read kept as 20 ms slices dated back from its arrival (RECORD_SLICE_MS, the precision
# of the agent's first audio): CPU left to the worker under test (every write and read is a
# round trip through LiveKit's FFI and the event loop).
FRAME_MS = 100
RECORD_FRAME_MS = 100
RECORD_SLICE_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
# Speech is queued up to MIC_QUEUE_MS ahead of the microphone's real-time playout: a caller
# stands for a person on another machine, so when this machine is busy and the caller's
# process waits for a core, its speech must not get gaps a real microphone would not have.
# Silence is kept only SILENCE_QUEUE_S ahead, so that speech starts when it is asked for.
MIC_QUEUE_MS = 1000
SILENCE_QUEUE_S = 0.1
TRANSCRIPTION_TOPIC = "lk.transcription"
# Beyond capacity a worker answers in the room: an agent joins, says and writes that all agents
# are busy, with its `busy` attribute set (agent/busy.py), and leaves. No agent at all within
# this long (from the call's start, the room's creation, as the page counts from the click) means
# no worker is running for the agent's name.
AGENT_JOIN_TIMEOUT = 4.5
BUSY_ATTRIBUTE = "busy"
BUSY_TIMEOUT = 10.0  # more, for the busy agent's transcript once it joined
NO_WORKER = "no agent answered: is a worker running for this agent name?"


class AgentsBusyError(ServiceError):
    """The agent said all agents are busy (its message), or none answered (NO_WORKER)."""

    def __init__(self, message: str = NO_WORKER) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Transcription:
    identity: str
    text: str
    final: bool
    track_id: str
    at: float  # wall-clock arrival
    sent: float = 0.0  # wall clock when the agent opened its stream (the stream's header)


@dataclass
class Turn:
    said: str
    speech_end: float  # wall clock when the last frame of speech left the microphone
    user_final: Transcription | None = None
    first_agent_audio: float | None = None  # first loud agent frame after speech_end
    agent_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    agent_texts: list[str] = field(default_factory=list)


def synthesize(text: str, language: str = "en", voice: str = "") -> np.ndarray:
    """Speech for `text` as 48 kHz int16: English by the bundled Hibari voice, another
    language (or `voice="espeak"`) by espeak-ng's voice for it."""
    if language != "en" or voice == "espeak":
        return _espeak(text, language)
    from agent.plugins.hibari import SAMPLE_RATE as TTS_RATE
    from agent.plugins.hibari import load_voice

    wav = load_voice()(text, seed=0)
    # trim the synthesizer's leading/trailing silence so "end of speech" is the last word
    loud = np.flatnonzero(np.abs(wav) > 0.02)
    wav = wav[loud[0] : loud[-1] + 1] if len(loud) else wav
    return resample(to_int16(wav), TTS_RATE, SAMPLE_RATE)


def insert_pause(pcm: np.ndarray, seconds: float) -> tuple[np.ndarray, float]:
    """48 kHz int16 speech with a pause of `seconds` at its quietest 20 ms between 30 % and
    75 % of its length (a gap between words), and where the pause starts, in seconds.

    The pause replaces the quiet gap already there (frames under SPEECH_RMS), so the caller is
    silent for `seconds`, not for `seconds` plus the gap between the two words."""
    hop = SAMPLE_RATE // 50
    frames = pcm[: len(pcm) // hop * hop].reshape(-1, hop).astype(np.float32) / 32768
    rms = np.sqrt((frames**2).mean(axis=1))
    low, high = int(len(rms) * 0.3), int(len(rms) * 0.75)
    start = end = low + int(np.argmin(rms[low:high]))
    while start > 0 and rms[start - 1] < SPEECH_RMS:
        start -= 1
    while end < len(rms) and rms[end] < SPEECH_RMS:
        end += 1
    silence = np.zeros(int(seconds * SAMPLE_RATE), np.int16)
    return np.concatenate(
        [pcm[: start * hop], silence, pcm[end * hop :]]
    ), start * hop / SAMPLE_RATE


def _espeak(text: str, voice: str) -> np.ndarray:
    from agent.plugins import espeak

    out = subprocess.run(
        [espeak.program(), "-v", voice, "-s", str(espeak.WORDS_PER_MINUTE), "-b", "1", "--stdout"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    pcm = np.frombuffer(out[44:], np.int16)  # after espeak-ng's 44-byte WAV header
    loud = np.flatnonzero(np.abs(pcm) > 600)  # trim leading/trailing silence, as above
    pcm = pcm[loud[0] : loud[-1] + 1] if len(loud) else pcm
    return resample(pcm, espeak.SAMPLE_RATE, SAMPLE_RATE)


class Caller:
    """`async with Caller(...) as caller:` joins a fresh room and dispatches the agent."""

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        agent_name: str,
        room: str | None = None,
        identity: str = "caller",
        attributes: dict[str, str] | None = None,
        metadata: str = "",
    ) -> None:
        self.url, self.api_key, self.api_secret = url, api_key, api_secret
        self.agent_name = agent_name
        self.room_name = room or f"call-{uuid.uuid4().hex[:8]}"
        self.identity = identity
        self.attributes = attributes or {}
        self.metadata = metadata  # the dispatch's metadata: JSON settings for this call
        self.room = rtc.Room()
        self.called_at = self.joined_at = 0.0
        self.transcripts: list[Transcription] = []
        # (arrival, 16 kHz float32) per RECORD_SLICE_MS of the agent's audio
        self.agent_frames: list[tuple[float, np.ndarray]] = []
        self._loud_at: list[float] = []  # arrivals of the agent's loud slices, in order
        self._speech: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self._spoken = asyncio.Event()
        self._last_speech_end = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._new_transcript = asyncio.Condition()
        self.mic_sid = ""

    async def __aenter__(self) -> Caller:
        self.called_at = time.time()
        async with api.LiveKitAPI(self.url, self.api_key, self.api_secret) as lk:
            await lk.room.create_room(api.CreateRoomRequest(name=self.room_name))
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=self.agent_name, room=self.room_name, metadata=self.metadata
                )
            )
        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(self.identity)
            .with_attributes(self.attributes)
            # can_update_own_metadata: the caller switches the STT with its attributes
            .with_grants(
                api.VideoGrants(room_join=True, room=self.room_name, can_update_own_metadata=True)
            )
            .to_jwt()
        )
        self.room.on("track_subscribed", self._on_track)
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_text)
        await self.room.connect(self.url, token)
        self.joined_at = time.time()
        self._source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=MIC_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await self.room.local_participant.publish_track(track, options)
        self.mic_sid = publication.sid
        self._spawn(self._microphone())
        return self

    def agent_joined(self) -> bool:
        return any(
            p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            for p in self.room.remote_participants.values()
        )

    async def wait_for_agent(self, timeout: float = AGENT_JOIN_TIMEOUT) -> None:
        """Return once an agent that serves the call is in the room. AgentsBusyError with the
        agent's message once an agent said all agents are busy (its transcript), or with
        NO_WORKER if no agent joined within `timeout`."""
        deadline, told_busy = self.called_at + timeout, False
        while True:
            agents = [p for p in self.room.remote_participants.values() if _is_agent(p)]
            told_busy = told_busy or any(p.attributes.get(BUSY_ATTRIBUTE) for p in agents)
            if told_busy and self.agent_finals():
                raise AgentsBusyError(self.agent_finals()[-1].text)
            if agents and not told_busy:
                return
            if time.time() >= deadline + (BUSY_TIMEOUT if told_busy else 0):
                raise AgentsBusyError()
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.room.disconnect()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _microphone(self) -> None:
        """A live microphone: queued speech at real-time pace, silence in between."""
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        pending = np.zeros(0, np.int16)
        while True:
            if not len(pending) and not self._speech.empty():
                pending = self._speech.get_nowait()
            if not len(pending) and self._source.queued_duration > SILENCE_QUEUE_S:
                await asyncio.sleep(FRAME_MS / 1000)  # silence just ahead: speech starts soon
                continue
            chunk, pending = pending[:FRAME_SAMPLES], pending[FRAME_SAMPLES:]
            padding = FRAME_SAMPLES - len(chunk)  # silence after the speech's last sample
            if padding:
                chunk = np.concatenate([chunk, silence[:padding]])
            frame = rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES)
            await self._source.capture_frame(frame)  # blocks while MIC_QUEUE_MS are queued
            if not len(pending) and self._speech.empty() and not self._spoken.is_set():
                queued = self._source.queued_duration - padding / SAMPLE_RATE
                self._last_speech_end = time.time() + queued
                self._spoken.set()

    def _on_track(self, track: rtc.Track, pub, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._spawn(self._record(track))

    async def _record(self, track: rtc.Track) -> None:
        step = 16 * RECORD_SLICE_MS
        async for ev in rtc.AudioStream(
            track, sample_rate=16000, num_channels=1, frame_size_ms=RECORD_FRAME_MS
        ):
            pcm = np.frombuffer(ev.frame.data, np.int16).astype(np.float32) / 32768
            arrival = time.time()  # of the frame's last slice: the others came before it
            for start in range(0, len(pcm), step):
                piece = pcm[start : start + step]
                at = arrival - (len(pcm) - start - len(piece)) / 16000
                self.agent_frames.append((at, piece))
                if _loud(piece):  # judged once per slice: a long call has thousands of them
                    self._loud_at.append(at)

    def _on_text(self, reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            attrs = reader.info.attributes or {}  # the agent's final flag is in the trailer
            async with self._new_transcript:
                self.transcripts.append(
                    Transcription(
                        identity=identity,
                        text=text,
                        final=attrs.get("lk.transcription_final") == "true",
                        track_id=attrs.get("lk.transcribed_track_id", ""),
                        at=time.time(),
                        sent=reader.info.timestamp / 1000,
                    )
                )
                self._new_transcript.notify_all()

        self._spawn(read())

    def user_finals(self) -> list[Transcription]:
        return [t for t in self.transcripts if t.final and t.track_id == self.mic_sid]

    def agent_finals(self) -> list[Transcription]:
        return [t for t in self.transcripts if t.final and t.track_id != self.mic_sid]

    async def wait_for(self, predicate, timeout: float) -> None:
        async with self._new_transcript:
            await asyncio.wait_for(self._new_transcript.wait_for(predicate), timeout)

    async def wait_for_greeting(self, timeout: float = 60) -> None:
        """The agent speaks first; wait until its greeting is over before talking."""
        await self.wait_for(lambda: self.agent_finals(), timeout)
        await self.wait_until_quiet()

    async def wait_until_quiet(self, quiet: float = 1.0, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if time.time() - (self._loud_at[-1] if self._loud_at else 0.0) > quiet:
                return
            await asyncio.sleep(0.1)

    async def speak(self, pcm: np.ndarray) -> float:
        """Play 48 kHz int16 speech into the microphone; returns when its last frame has left,
        the wall-clock end of the speech."""
        self._spoken.clear()
        await self._speech.put(pcm)
        await self._spoken.wait()
        return self._last_speech_end

    def agent_identity(self) -> str:
        return next(p.identity for p in self.room.remote_participants.values() if _is_agent(p))

    async def rpc(self, method: str, payload: str = "") -> str:
        """Call one of the agent's RPC methods (push-to-talk: start_turn, end_turn)."""
        return await self.room.local_participant.perform_rpc(
            destination_identity=self.agent_identity(), method=method, payload=payload
        )

    async def say(
        self, text: str, pcm: np.ndarray | None = None, timeout: float = 30, push_to_talk=False
    ) -> Turn:
        """Speak `text` (or the given 48 kHz int16 speech) and wait for the agent's reply.
        `push_to_talk`: hold the agent's talk button (RPC) while speaking, release at the end."""
        pcm = synthesize(text) if pcm is None else pcm
        users_before = len(self.user_finals())
        agents_before = len(self.agent_finals())
        loud_before, frames_before = len(self._loud_at), len(self.agent_frames)
        if push_to_talk:
            await self.rpc("start_turn")
        turn = Turn(said=text, speech_end=await self.speak(pcm))
        if push_to_talk:  # release once the last word has left the microphone
            await asyncio.sleep(max(0.0, turn.speech_end - time.time()))
            await self.rpc("end_turn")
        try:
            await self.wait_for(lambda: len(self.user_finals()) > users_before, timeout)
            turn.user_final = self.user_finals()[-1]
            await self.wait_for(lambda: len(self.agent_finals()) > agents_before, timeout)
        except asyncio.TimeoutError:
            pass
        await self.wait_until_quiet()
        heard = [(t, pcm) for t, pcm in self.agent_frames[frames_before:] if t > turn.speech_end]
        loud = (t for t in self._loud_at[loud_before:] if t > turn.speech_end)
        turn.first_agent_audio = next(loud, None)
        if heard:
            turn.agent_audio = np.concatenate([pcm for _, pcm in heard])
        turn.agent_texts = [t.text for t in self.agent_finals()[agents_before:]]
        return turn


def _is_agent(participant: rtc.RemoteParticipant) -> bool:
    return participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


def _loud(pcm: np.ndarray) -> bool:
    return bool(len(pcm)) and float(np.sqrt(np.mean(pcm**2))) > 0.01


async def _call(args: argparse.Namespace) -> None:
    from agent import config

    settings = config.Settings.from_env()
    if not settings.livekit_url:
        raise config.ConfigError("LIVEKIT_URL is not set: copy .env.example to .env")
    async with Caller(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
        settings.agent_name,
    ) as caller:
        print(f"joined room {caller.room_name}; waiting for {settings.agent_name!r} to greet…")
        await caller.wait_for_agent()
        await caller.wait_for_greeting()
        print(f"agent: {caller.agent_finals()[-1].text}")
        for line in args.say:
            print(f"you (spoken): {line}")
            turn = await caller.say(line)
            heard = turn.user_final.text if turn.user_final else "(no transcript)"
            print(f"agent heard: {heard}")
            print(f"agent: {' '.join(turn.agent_texts) or '(no reply)'}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agent call", description="Speak to the running agent from a terminal."
    )
    parser.add_argument("--say", action="append", default=[], help="a sentence to speak (repeat)")
    args = parser.parse_args(argv)
    args.say = args.say or ["What a lovely day it is."]
    asyncio.run(_call(args))
