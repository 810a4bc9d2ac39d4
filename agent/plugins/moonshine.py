"""Moonshine tiny-en as a streaming LiveKit STT plugin, fully offline.

The weights ship inside the `moonshine-voice==0.0.73` wheel. One model is loaded per
process and shared by every stream of that process, so an extra call costs a Moonshine
stream, not another model.

Moonshine's Transcriber is not safe to drive from several threads: two streams decoding at
once, or a stream freed while it decodes, corrupt its heap (SIGSEGV, "double free"). So every
call into the model runs on one engine thread per process (`on_engine`): its queue serializes
the calls, and a stream's close is queued behind its last decode. The native code releases
the GIL, so the event loop keeps running while the engine thread decodes.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    stt,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given
from moonshine_voice.transcriber import LineCompleted, LineTextChanged

from ..audio import float_mono
from . import Segment, require_english

SAMPLE_RATE = 16000
CHUNK_SAMPLES = SAMPLE_RATE // 10  # feed the model 100 ms at a time: fewer thread hops
_WORD = re.compile(r"\w")
# Below this RMS (about -46 dBFS) a 100 ms chunk is silence or room noise, not speech.
MIN_SPEECH_RMS = 0.005


_load_lock = threading.Lock()  # job threads prewarm together; moonshine's loader is not thread-safe
# the one thread that touches the model and its streams (see the module docstring)
_engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moonshine")
T = TypeVar("T")


async def on_engine(fn: Callable[..., T], *args) -> T:
    """Run `fn(*args)` on the engine thread, after every call queued before it."""
    return await asyncio.get_running_loop().run_in_executor(_engine, fn, *args)


@functools.cache
def _load(model: str):
    from moonshine_voice import ModelArch, Transcriber, get_model_path

    # speaker identification costs compute and the agent never uses it
    return Transcriber(
        str(get_model_path(model)), ModelArch.TINY, options={"identify_speakers": "false"}
    )


def load_transcriber(model: str = "tiny-en"):
    """The process-wide Moonshine model (loading takes ~0.5 s and ~100 MB)."""
    with _load_lock:
        return _load(model)


@dataclass
class MoonshineOptions:
    language: str = "en"
    update_interval: float = 0.5  # seconds of audio between interim re-decodes


class MoonshineSTT(stt.STT):
    def __init__(self, *, language: str = "en", update_interval: float = 0.5) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True, interim_results=True, manual_flush=True
            )
        )
        require_english("local/moonshine-tiny", language)
        self._opts = MoonshineOptions(language=language, update_interval=update_interval)

    @property
    def model(self) -> str:
        return "moonshine-tiny"

    @property
    def provider(self) -> str:
        return "local"

    def prewarm(self) -> None:
        load_transcriber()

    def transcribe_samples(
        self, samples: np.ndarray, word_timestamps: bool = False
    ) -> list[Segment]:
        """16 kHz mono float32 -> one Segment per line (tiny-en has no word times)."""
        transcriber = load_transcriber()
        result = _engine.submit(
            transcriber.transcribe_without_streaming, samples.tolist(), SAMPLE_RATE
        ).result()
        return [
            Segment(line.start_time, line.start_time + line.duration, text)
            for line in result.lines
            if (text := line.text.strip())
        ]

    def update_options(self, *, language: NotGivenOr[str] = NOT_GIVEN) -> None:
        if is_given(language):
            require_english("local/moonshine-tiny", language)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        samples = float_mono(frame)
        transcript = await on_engine(
            load_transcriber().transcribe_without_streaming, samples.tolist(), frame.sample_rate
        )
        rate = frame.sample_rate

        def heard(line) -> bool:  # words, over audio loud enough to be speech (see _emit)
            span = samples[
                int(line.start_time * rate) : int((line.start_time + line.duration) * rate)
            ]
            loud = len(span) and float(np.sqrt(np.mean(span**2))) >= MIN_SPEECH_RMS
            return bool(_WORD.search(line.text)) and bool(loud)

        lines = [line for line in transcript.lines if heard(line)]
        text = " ".join(line.text.strip() for line in lines)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid(),
            alternatives=[
                stt.SpeechData(
                    language=self._opts.language,
                    text=text,
                    start_time=lines[0].start_time if lines else 0.0,
                    end_time=(lines[-1].start_time + lines[-1].duration) if lines else 0.0,
                )
            ],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> MoonshineStream:
        return MoonshineStream(stt=self, opts=self._opts, conn_options=conn_options)


class MoonshineStream(stt.RecognizeStream):
    def __init__(
        self, *, stt: MoonshineSTT, opts: MoonshineOptions, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._opts = opts
        self._speaking = False
        self._request_id = utils.shortuuid()
        self._loudest = 0.0  # loudest chunk since the last final transcript

    async def _run(self) -> None:
        transcriber = await asyncio.to_thread(load_transcriber)
        mstream = await on_engine(transcriber.create_stream, self._opts.update_interval)
        # Listener callbacks fire inside add_audio/stop, on the engine thread: collect them
        # there and turn them into SpeechEvents back on the event loop.
        pending: list = []
        mstream.add_listener(pending.append)

        def feed(samples: list[float] | None) -> list:
            if samples is None:  # flush: finish the current line now
                mstream.stop()
                mstream.start()
            else:
                mstream.add_audio(samples, SAMPLE_RATE)
            events = pending.copy()
            pending.clear()
            return events

        chunker = utils.audio.AudioByteStream(
            sample_rate=SAMPLE_RATE, num_channels=1, samples_per_channel=CHUNK_SAMPLES
        )
        await on_engine(mstream.start)
        try:
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    for frame in chunker.flush():
                        self._emit(await on_engine(feed, float_mono(frame).tolist()))
                    self._emit(await on_engine(feed, None))
                    continue
                for frame in chunker.push(item.data):
                    samples = float_mono(frame)
                    self._loudest = max(self._loudest, float(np.sqrt(np.mean(samples**2))))
                    self._emit(await on_engine(feed, samples.tolist()))
            self._emit(await on_engine(feed, None))
        finally:
            # Queued, not awaited: even when this task is cancelled mid-decode, the close runs
            # on the engine thread after that decode has finished, never during it.
            _engine.submit(mstream.close)

    def _emit(self, events: list) -> None:
        for ev in events:
            line = ev.line
            text = line.text.strip()
            # Like Whisper, Moonshine can "hear" a lone "You" or "?" in silence; passed on,
            # it would interrupt the agent. A line counts if it has words and some audio since
            # the last final was loud enough to be speech.
            wordful = bool(_WORD.search(text)) and self._loudest >= MIN_SPEECH_RMS
            if isinstance(ev, LineTextChanged) and wordful and not line.is_complete:
                self._start_speech()
                self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, line, text)
            elif isinstance(ev, LineCompleted):
                if wordful:
                    self._start_speech()
                    self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, line, text)
                    self._loudest = 0.0
                if self._speaking:
                    self._speaking = False
                    self._send(stt.SpeechEventType.END_OF_SPEECH)
                self._request_id = utils.shortuuid()

    def _start_speech(self) -> None:
        if not self._speaking:
            self._speaking = True
            self._send(stt.SpeechEventType.START_OF_SPEECH)

    def _send(self, kind: stt.SpeechEventType, line=None, text: str = "") -> None:
        alternatives = []
        if line is not None:
            start = self.start_time_offset + line.start_time
            alternatives.append(
                stt.SpeechData(
                    language=self._opts.language,
                    text=text,
                    start_time=start,
                    end_time=start + line.duration,
                    confidence=1.0,
                )
            )
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=kind, request_id=self._request_id, alternatives=alternatives)
        )
