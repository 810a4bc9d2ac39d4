"""local/whisper-tiny: the offline Whisper plugin a session can use, with word timings."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt

from agent import config
from agent.plugins.hibari import SAMPLE_RATE
from agent.plugins.whisper import WhisperSTT
from tests.speech import spoken
from tools.wer import wer

pytestmark = pytest.mark.unit

SENTENCE = "Please book a table for two at seven tonight."


def test_descriptor_builds_the_plugin():
    desc = config.parse("stt", "local/whisper-tiny:en")
    built = config.build(desc, config.Settings())
    assert isinstance(built, WhisperSTT) and not built.capabilities.streaming
    assert (built.provider, built.model) == ("local", "whisper-tiny")


async def test_recognize_24khz_speech_with_word_timings():
    pcm = (np.clip(spoken(SENTENCE), -1, 1) * 32767).astype(np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, len(pcm))  # session rate, not 16 kHz
    event = await WhisperSTT().recognize([frame])
    assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    alt = event.alternatives[0]
    assert wer(SENTENCE, alt.text) <= 0.1, alt.text
    assert len(alt.words) == len(SENTENCE.split())
    duration = len(pcm) / SAMPLE_RATE
    for word in alt.words:
        assert 0 <= word.start_time <= word.end_time <= duration
