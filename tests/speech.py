"""Speech for the tests: sentences spoken by the bundled Hibari voice, and the two real
recordings (with their texts) that ship inside the moonshine-voice wheel."""

from __future__ import annotations

import functools
from pathlib import Path

import moonshine_voice
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


# Real read speech from the moonshine-voice wheel: Samuel Beckett (10 s), Dickens (44 s).
RECORDINGS = Path(moonshine_voice.__file__).parent / "assets"
BECKETT = RECORDINGS / "beckett.wav"
BECKETT_SAID = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
DICKENS = RECORDINGS / "two_cities.wav"
DICKENS_SAID = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
    "season of Light, it was the season of Darkness, it was the spring of hope, it was the "
    "winter of despair, we had everything before us, we had nothing before us, we were all "
    "going direct to Heaven, we were all going direct the other way, in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its "
    "being received, for good or for evil, in the superlative degree of comparison only."
)
