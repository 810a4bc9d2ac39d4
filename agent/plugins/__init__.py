"""The local engines as ordinary LiveKit plugins (stt.STT, tts.TTS, llm.LLM subclasses).

A local STT plugin may also offer file transcription, which `python -m agent transcribe` and the
gateway's batch endpoints use: `transcribe_samples(samples, word_timestamps) -> list[Segment]`
over 16 kHz mono float32 audio. Its catalog row says whether it gives word times.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the audio
    end: float


@dataclass
class Segment:
    """A stretch of transcribed audio: a Moonshine line, a Whisper segment or a subtitle cue."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


def require_english(model: str, language: str) -> None:
    """The bundled English-only STT models (tiny-en, tiny.en) refuse other languages."""
    if language != "en":
        raise ValueError(f"{model} speaks only 'en', not {language!r}")
