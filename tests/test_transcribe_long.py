"""A long file through `python -m agent transcribe`'s engine on real speech: cut into windows
at quiet moments, nothing lost at the cut (the windows' logic alone: test_transcribe.py)."""

from pathlib import Path

import numpy as np
import pytest

from agent import audio_files, config
from agent.audio import resample
from tests.speech import VOICE_RATE as TTS_RATE
from tests.speech import spoken
from tools import transcribe
from tools.wer import wer

pytestmark = pytest.mark.slow

SENTENCE = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."


def test_long_audio_is_windowed_and_fully_transcribed():
    speech = spoken(SENTENCE)
    long = np.concatenate([speech, np.zeros(TTS_RATE // 2, np.float32)] * 7)  # ~41 s
    samples = resample(long, TTS_RATE)
    windows = audio_files.windows(samples)
    assert len(windows) == 2 and sum(len(w) for _, w in windows) == len(samples)
    audio = audio_files.Audio(Path("long.wav"), samples, TTS_RATE, "wav")
    engine = transcribe.make_engine(config.parse("stt", "local/moonshine-tiny"), config.Settings())
    done = []
    result = engine.transcribe(audio, "en", False, done.append)
    assert wer(" ".join([SENTENCE] * 7), result.text) <= 0.1
    assert sum(done) == pytest.approx(audio.duration)
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
