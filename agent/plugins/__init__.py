"""The local engines as ordinary LiveKit plugins (stt.STT, tts.TTS, llm.LLM subclasses)."""

import numpy as np
from livekit import rtc


def float_mono(frame: rtc.AudioFrame) -> np.ndarray:
    """An int16 frame as mono float32 in [-1, 1], what the local models take."""
    pcm = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return pcm.mean(axis=1).astype(np.float32) / 32768.0


def require_english(model: str, language: str) -> None:
    """The bundled STT models are English-only (tiny-en, tiny.en)."""
    if language != "en":
        raise ValueError(f"{model} speaks only 'en', not {language!r}")
