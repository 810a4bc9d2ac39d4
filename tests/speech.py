"""Real speech for the tests, spoken by the bundled Hibari voice (no recordings to ship)."""

from __future__ import annotations

import functools

import numpy as np
from livekit import rtc

from agent.audio import ENGINE_RATE, resample
from agent.plugins.hibari import SAMPLE_RATE as VOICE_RATE
from agent.plugins.hibari import load_voice


@functools.cache
def spoken(text: str) -> np.ndarray:
    """`text` as 24 kHz (VOICE_RATE) mono float32, untrimmed."""
    voice = load_voice()
    return np.concatenate([voice.from_ids(voice.ids(p), 1.0) for p in voice.phonemize(text)])


def spoken_16k(text: str) -> np.ndarray:
    """`text` as 16 kHz mono float32, the local engines' rate."""
    return resample(spoken(text), VOICE_RATE, ENGINE_RATE)


def silence(seconds: float, rate: int = ENGINE_RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


def frames(samples: np.ndarray, rate: int = ENGINE_RATE, ms: int = 20) -> list[rtc.AudioFrame]:
    """Audio cut into int16 frames of `ms` milliseconds, as a microphone track delivers it."""
    pcm = (
        samples if samples.dtype == np.int16 else (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    )
    size = rate * ms // 1000
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % size, np.int16)])
    return [rtc.AudioFrame(c.tobytes(), rate, 1, size) for c in pcm.reshape(-1, size)]
