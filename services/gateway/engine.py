"""The gateway's speech engines: one session's audio in, interim and final hypotheses out.

The session's language picks the engine, as `local/auto` does for the agent (agent/catalog.py):
English on Moonshine tiny-en (Recognizer), every other Whisper language on the multilingual
Whisper base (WhisperRecognizer), in that language. Cartesia's ink-whisper languages are
Whisper's, so each is transcribed for real; a language no local engine speaks is refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc
from moonshine_voice.transcriber import LineCompleted, LineStarted, LineTextChanged

from agent import config
from agent.audio import ENGINE_RATE, RAW_ENCODINGS, SPEECH_RMS
from agent.plugins.moonshine import load_transcriber, on_engine
from agent.plugins.whisper import load_model

from .validation import BadRequestError

WINDOW = ENGINE_RATE // 20  # 50 ms: the unit of the volume gate and of silence counting
DEFAULT_MAX_SILENCE = 0.5  # seconds, when a session does not set max_silence_duration_secs


@dataclass
class Hypothesis:
    """An interim or final transcript of the utterance in progress."""

    text: str
    is_final: bool
    start: float  # seconds of session audio
    end: float
    position: float  # how much audio had arrived when it was produced

    def words(self) -> list[dict[str, Any]]:
        """Word timings spread over the utterance by length: tiny-en has no word timestamps."""
        words = self.text.split()
        total = sum(len(w) + 1 for w in words) or 1
        out, t = [], self.start
        for w in words:
            d = (self.end - self.start) * (len(w) + 1) / total
            out.append({"word": w, "start": round(t, 3), "end": round(t + d, 3)})
            t += d
        return out


@dataclass
class Recognizer:
    """One session's audio in, interim and final transcripts out (Cartesia's semantics).

    - min_volume: a 50 ms window whose RMS (full scale = 1.0) is below it is silence: the
      model hears zeros there. 0 (the default) lets everything through.
    - max_silence_duration_secs: once speech was heard, this much silence ends the utterance
      and its final is sent. Silence is a quiet window or no speech line open in Moonshine's
      own voice detector, so endpointing also works over a noise floor.
    Between two finals Moonshine may close several lines: they are joined into one utterance,
    and interims carry the whole utterance so far (a delta since the last final, as Cartesia).

    One Moonshine stream runs for the whole session: an utterance ends when silence follows a
    closed line, without stopping the stream, because a stop drops the audio its voice detector
    is still holding: the first words of the next utterance. Only `finalize` stops it.
    """

    sample_rate: int
    encoding: str
    min_volume: float = 0.0
    max_silence: float = DEFAULT_MAX_SILENCE
    position: float = 0.0  # seconds of audio received
    language: str = "en"  # what it transcribes (Moonshine tiny-en: English only)
    _pending: list = field(default_factory=list)  # Moonshine events, filled on its thread
    # closed lines of the current utterance by id (Moonshine may report a completion twice)
    _lines: dict[int, str] = field(default_factory=dict)
    _done: set[int] = field(default_factory=set)  # lines already sent in a final
    _line: str = ""  # the open line's text
    _line_open: bool = False
    _start: float | None = None  # the utterance's span in session seconds
    _end: float = 0.0
    _origin: float = 0.0  # Moonshine's clock restarts at every stream start
    _silence: float = 0.0
    _last_interim: str = ""
    _tail: bytes = b""  # bytes of a sample split across two messages
    _buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        self._width, self._decode = RAW_ENCODINGS[self.encoding]
        self._resampler = (
            rtc.AudioResampler(
                self.sample_rate, ENGINE_RATE, quality=rtc.AudioResamplerQuality.HIGH
            )
            if self.sample_rate != ENGINE_RATE
            else None
        )
        self._stream = None

    async def push(self, data: bytes) -> list[Hypothesis]:
        return await on_engine(self._feed, self._to_engine(data), False)

    async def finalize(self) -> list[Hypothesis]:
        """Everything heard so far becomes final now (Cartesia `finalize`, Inference
        `session.finalize`)."""
        tail = np.zeros(0, np.float32)
        if self._resampler is not None:
            tail = _int16_to_float(b"".join(f.data.tobytes() for f in self._resampler.flush()))
        return await on_engine(self._feed, tail, True)

    async def aclose(self) -> None:
        if self._stream is not None:
            await on_engine(self._stream.close)
            self._stream = None

    def _to_engine(self, data: bytes) -> np.ndarray:
        data = self._tail + data
        cut = len(data) - len(data) % self._width
        data, self._tail = data[:cut], data[cut:]
        samples = self._decode(data)
        if self._resampler is None or not len(samples):
            return samples
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        frames = self._resampler.push(rtc.AudioFrame(pcm.tobytes(), self.sample_rate, 1, len(pcm)))
        return _int16_to_float(b"".join(f.data.tobytes() for f in frames))

    # everything below runs on Moonshine's engine thread (on_engine), never two at once

    def _feed(self, samples: np.ndarray, final: bool) -> list[Hypothesis]:
        if self._stream is None:
            self._stream = load_transcriber().create_stream(0.5)
            self._stream.add_listener(self._pending.append)
            self._stream.start()
        self._buffer = np.concatenate([self._buffer, samples])
        if final and len(self._buffer) % WINDOW:
            self._buffer = np.pad(self._buffer, (0, WINDOW - len(self._buffer) % WINDOW))
        out: list[Hypothesis] = []
        while len(self._buffer) >= WINDOW:
            window, self._buffer = self._buffer[:WINDOW], self._buffer[WINDOW:]
            loud = float(np.sqrt(np.mean(window**2))) >= self.min_volume
            self._stream.add_audio((window if loud else np.zeros(WINDOW)).tolist(), ENGINE_RATE)
            self.position += WINDOW / ENGINE_RATE
            out += self._drain()
            self._silence = (
                0.0 if loud and self._line_open else self._silence + WINDOW / ENGINE_RATE
            )
            # a line still open ends with Moonshine's own voice detector (it hears zeros
            # after a quiet window), so the cut waits for it rather than stopping the stream
            if (
                self._start is not None
                and self._silence >= self.max_silence
                and not self._line_open
            ):
                out += self._end_utterance()
        if final:
            self._stream.stop()  # closes the open line: everything heard becomes final
            self._drain()  # interims of a line about to be final are not worth sending
            out += self._end_utterance()
            self._stream.start()
            self._origin, self._done = self.position, set()  # its clock and line ids restart
        return out

    def _drain(self) -> list[Hypothesis]:
        out = []
        for ev in self._pending:
            line, text = ev.line, ev.line.text.strip()
            if line.line_id in self._done:
                continue
            if isinstance(ev, LineStarted):
                self._line_open = True
            elif isinstance(ev, LineTextChanged) and text and not line.is_complete:
                self._line = text
            elif isinstance(ev, LineCompleted):
                self._line_open, self._line = False, ""
                if text:
                    self._lines[line.line_id] = text
                    self._end = self._origin + line.start_time + line.duration
            if self._start is None and (self._line_open or self._lines):
                # the line's own start: its voice detector looks back before it opened it
                self._start = self._origin + line.start_time
            utterance = " ".join([*self._lines.values(), self._line])
            if utterance.strip() and utterance != self._last_interim:
                self._last_interim = utterance
                out.append(self._transcript(utterance.strip(), is_final=False))
        self._pending.clear()
        return out

    def _end_utterance(self) -> list[Hypothesis]:
        text = " ".join(self._lines.values())
        out = [self._transcript(text, is_final=True)] if text else []
        self._done.update(self._lines)
        self._lines, self._last_interim = {}, ""
        self._start, self._end, self._silence = None, 0.0, 0.0
        return out

    def _transcript(self, text: str, is_final: bool) -> Hypothesis:
        start = self._start if self._start is not None else self.position
        end = max(self._end, start) if is_final else self.position
        return Hypothesis(text, is_final, round(start, 3), round(end, 3), round(self.position, 3))


def _int16_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.int16).astype(np.float32) / 32768.0


@dataclass
class WhisperRecognizer(Recognizer):
    """Whisper base in the session's language, with Recognizer's semantics: a 50 ms window
    louder than the gate (min_volume, and at least SPEECH_RMS) is speech; `max_silence` of
    quiet after speech ends the utterance and its final is sent. While one is spoken it is
    decoded again every `interim_every` seconds for an interim, when the model is idle (so an
    interim never delays anybody's final). Whisper has no streaming state: nothing to close."""

    interim_every: float = 1.0
    _audio: list = field(default_factory=list)  # the utterance's windows (and a little before)
    _since_interim: float = 0.0

    async def push(self, data: bytes) -> list[Hypothesis]:
        return await asyncio.to_thread(self._feed, self._to_engine(data), False)

    async def finalize(self) -> list[Hypothesis]:
        tail = np.zeros(0, np.float32)
        if self._resampler is not None:
            tail = _int16_to_float(b"".join(f.data.tobytes() for f in self._resampler.flush()))
        return await asyncio.to_thread(self._feed, tail, True)

    async def aclose(self) -> None:
        pass

    def _feed(self, samples: np.ndarray, final: bool) -> list[Hypothesis]:
        self._buffer = np.concatenate([self._buffer, samples])
        if final and len(self._buffer) % WINDOW:
            self._buffer = np.pad(self._buffer, (0, WINDOW - len(self._buffer) % WINDOW))
        out: list[Hypothesis] = []
        gate = max(self.min_volume, SPEECH_RMS)
        step = WINDOW / ENGINE_RATE
        while len(self._buffer) >= WINDOW:
            window, self._buffer = self._buffer[:WINDOW], self._buffer[WINDOW:]
            self.position += step
            loud = float(np.sqrt(np.mean(window**2))) >= gate
            self._audio = [*self._audio[-6:], window] if self._start is None else self._audio
            if loud:
                if self._start is None:  # 0.3 s before it too: the first word's onset
                    self._start = self.position - step * len(self._audio)
                else:
                    self._audio.append(window)
                self._end, self._silence = self.position, 0.0
            elif self._start is not None:
                self._audio.append(window)
                self._silence += step
            if self._start is None:
                continue
            self._since_interim += step
            if self._silence >= self.max_silence:
                out += self._end_utterance()
            elif self._since_interim >= self.interim_every:
                self._since_interim = 0.0
                out += self._transcribe(final=False)
        if final:
            out += self._end_utterance()
        return out

    def _transcribe(self, final: bool) -> list[Hypothesis]:
        samples = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        segments = load_model("whisper-base").decode(samples, self.language, wait=final)
        text = " ".join(s.text for s in segments or ())
        if not text or (not final and text == self._last_interim):
            return []
        self._last_interim = text
        return [self._transcript(text, is_final=final)]

    def _end_utterance(self) -> list[Hypothesis]:
        out = self._transcribe(final=True) if self._start is not None else []
        self._audio, self._last_interim, self._since_interim = [], "", 0.0
        self._start, self._end, self._silence = None, 0.0, 0.0
        return out


# the streaming engine for each model `local/auto` can pick
STREAM_ENGINES = {"local/moonshine-tiny": Recognizer, "local/whisper-base": WhisperRecognizer}


def local_stt(language: str) -> config.Descriptor:
    """The local STT that speaks `language` (what `local/auto` picks), or BadRequestError naming
    the models that do speak it: a language is never relabelled as another one."""
    try:
        return config.parse("stt", f"local/auto:{language.split('-')[0] or 'en'}")
    except config.ConfigError as e:
        raise BadRequestError(f"no local engine transcribes language {language!r}: {e}") from None


def engine_for(language: str, sample_rate: int, encoding: str, **vad: float) -> Recognizer:
    """A session's recognizer, on the engine that speaks its language."""
    desc = local_stt(language)
    return STREAM_ENGINES[desc.model.id](sample_rate, encoding, **vad, language=desc.variant)


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
