"""The gateway's speech engine: each session's audio through the STT plugin stream a call uses.

The session's language picks the STT as `local/auto` does for a call (agent/catalog.py, built by
agent.config): English on Moonshine tiny-en, every other Whisper language on Whisper base, in
that language; a language no local engine speaks is refused. The wire's audio becomes
`rtc.AudioFrame`s at the client's rate, pushed into `stt.stream()` (LiveKit's stream resamples
them, as it does a call's), and the stream's SpeechEvents become Cartesia's utterances: one runs
from the plugin's first transcript to its END_OF_SPEECH, which comes after `min_silence` of quiet
(Cartesia's max_silence_duration_secs). Its finals (Moonshine finishes a line at each short
pause) are joined into one final, and each interim carries the utterance so far.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import stt, utils

from agent import config
from agent.audio import RAW_ENCODINGS

from .validation import BadRequestError

# A session's audio may run this far ahead of real time (a file sent at once); beyond it, its
# messages are read at real-time pace, so TCP holds a flood back instead of the plugin's queue
# holding it in memory (the engine works through audio at its own pace, not on arrival).
MAX_AHEAD_SECONDS = 60.0
DEFAULT_MAX_SILENCE = 0.5  # seconds, when a session does not set max_silence_duration_secs
# the provider options the gateway honours (Cartesia's query parameters, LiveKit Inference's
# extra_kwargs) -> the local STT plugins' own options
PLUGIN_OPTIONS = {"min_volume": "min_volume", "max_silence_duration_secs": "min_silence"}
# what a session asks of a plugin beyond them: Cartesia's finals are whole utterances, so
# Moonshine need not finish a line at each short pause (which costs words the pause splits)
SESSION_OPTIONS = {"local/moonshine-tiny": {"early_finals": False}}


@dataclass
class Transcript:
    """An interim or final transcript of the utterance in progress."""

    text: str
    is_final: bool
    start: float  # seconds of session audio
    end: float

    def words(self) -> list[dict[str, Any]]:
        """Word timings spread over the utterance by length: the streams decode without word
        timestamps."""
        words = self.text.split()
        total = sum(len(w) + 1 for w in words) or 1
        out, t = [], self.start
        for w in words:
            d = (self.end - self.start) * (len(w) + 1) / total
            out.append({"word": w, "start": round(t, 3), "end": round(t + d, 3)})
            t += d
        return out


Emit = Callable[[Transcript], Awaitable[None]]


def local_stt(language: str) -> config.Descriptor:
    """The local STT that speaks `language` (what `local/auto` picks), or BadRequestError naming
    the models that do speak it: a language is never relabelled as another one."""
    try:
        return config.parse("stt", f"local/auto:{language.split('-')[0] or 'en'}")
    except config.ConfigError as e:
        raise BadRequestError(f"no local engine transcribes language {language!r}: {e}") from None


def plugin_options(options: dict[str, Any]) -> dict[str, float]:
    """The plugin options that provider options (already validated) map onto."""
    out = {"min_silence": DEFAULT_MAX_SILENCE}
    for name, value in options.items():
        if name in PLUGIN_OPTIONS and value is not None:
            out[PLUGIN_OPTIONS[name]] = float(value)
    return out


class Transcriber:
    """One session's speech: wire audio in (`push`), its transcripts out through `emit`, in
    order, from a task that reads the plugin's stream."""

    def __init__(
        self,
        language: str,
        sample_rate: int,
        encoding: str,
        options: dict[str, Any],
        emit: Emit,
        position: float = 0.0,
    ) -> None:
        self.descriptor = local_stt(language)
        self.stt = config.build(self.descriptor)  # the engine on its own, in its language
        self.configure(options)
        self.sample_rate, self.encoding = sample_rate, encoding
        self._width, self._decode = RAW_ENCODINGS[encoding]
        self._tail = b""  # bytes of a sample split across two messages
        self.position = position  # seconds of audio received
        self._received, self._since = 0.0, time.monotonic()  # by this transcriber
        self._emit = emit
        self._open()

    def configure(self, options: dict[str, Any]) -> None:
        """Apply provider options to the STT and its running stream."""
        model = self.descriptor.model.id
        self.stt.update_options(**SESSION_OPTIONS.get(model, {}), **plugin_options(options))

    def _open(self) -> None:
        self._stream = self.stt.stream(language=self.descriptor.variant)
        self._reader = asyncio.create_task(self._read(self._stream, self.position))

    async def push(self, data: bytes) -> None:
        if self._reader.done():  # the stream failed: fail the session with its error
            self._reader.result()
        data = self._tail + data
        cut = len(data) - len(data) % self._width
        data, self._tail = data[:cut], data[cut:]
        if not data:
            return
        # the decoders scale int16 by 1/32768: this undoes it exactly (agent.audio.to_int16's
        # 32767 would change every sample, and Moonshine's words with them)
        pcm = np.clip(np.round(self._decode(data) * 32768), -32768, 32767).astype(np.int16)
        self._stream.push_frame(rtc.AudioFrame(pcm.tobytes(), self.sample_rate, 1, len(pcm)))
        self.position += len(pcm) / self.sample_rate
        self._received += len(pcm) / self.sample_rate
        ahead = self._received - (time.monotonic() - self._since)
        if ahead > MAX_AHEAD_SECONDS:
            await asyncio.sleep(ahead - MAX_AHEAD_SECONDS)

    async def finalize(self, reopen: bool = True) -> None:
        """Everything heard so far becomes final, emitted before this returns (Cartesia
        `finalize`, Inference `session.finalize`); a fresh stream takes the audio that follows."""
        self._stream.end_input()  # the plugin's flush, then the end of its input
        try:
            await self._reader
        finally:
            await self._stream.aclose()
        if reopen:
            self._open()

    async def aclose(self) -> None:
        # the plugin's own lifecycle: Moonshine's close waits for a decode in progress
        await self._stream.aclose()
        await utils.aio.cancel_and_wait(self._reader)

    async def _read(self, stream: stt.RecognizeStream, origin: float) -> None:
        """The stream's events as utterances; `origin`: where the stream starts in the session."""
        lines: list[str] = []  # the utterance's finals so far
        start, end, last_interim = None, 0.0, ""
        async for ev in stream:
            data = ev.alternatives[0] if ev.alternatives else None
            text = data.text.strip() if data else ""
            if text and start is None:
                start = origin + data.start_time
            if ev.type == stt.SpeechEventType.INTERIM_TRANSCRIPT and text:
                utterance = " ".join([*lines, text])
                if utterance != last_interim:
                    last_interim = utterance
                    await self._emit(Transcript(utterance, False, start, origin + data.end_time))
            elif ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and text:
                lines.append(text)
                end = origin + data.end_time
            elif ev.type == stt.SpeechEventType.END_OF_SPEECH:
                if lines:
                    await self._emit(Transcript(" ".join(lines), True, start, max(start, end)))
                lines, start, end, last_interim = [], None, 0.0, ""
        if lines:  # the input ended before the plugin's END_OF_SPEECH
            await self._emit(Transcript(" ".join(lines), True, start, max(start, end)))


# The local engine that transcribes a file (POST /stt, /audio/transcriptions), with word times:
# English on Whisper tiny.en, which on whole files beats Moonshine tiny-en (the streaming engine
# above): WER 0.000 against 0.076 on 44 s of Dickens, 0.000 against 0.167 on Beckett; every other
# language on the engine that speaks it (Whisper base), in that language.
ENGLISH_FILE_ENGINE = "local/whisper-tiny:en"


def local_engine(language: str) -> str:
    """The STT descriptor (agent/catalog.py) that transcribes a file in `language` (both give
    word timestamps): the one place the gateway chooses a file engine."""
    desc = local_stt(language)
    return ENGLISH_FILE_ENGINE if desc.variant == "en" else str(desc)
