"""A long file through `python -m agent transcribe`'s engine on real speech: cut into windows
at quiet moments, nothing lost at the cut (the windows' logic alone: test_transcribe.py)."""

import pytest

from tests.speech import spoken
from tests.test_transcribe import transcribe_long
from tools.wer import wer

pytestmark = pytest.mark.slow

SENTENCE = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."


def test_long_audio_is_windowed_and_fully_transcribed():
    audio, _, result, done = transcribe_long(spoken(SENTENCE), words=False)
    assert wer(" ".join([SENTENCE] * 7), result.text) <= 0.1
    assert sum(done) == pytest.approx(audio.duration)
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
