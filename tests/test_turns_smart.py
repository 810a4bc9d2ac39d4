"""Smart Turn v3.2 as TURN_DETECTION (the real model on real read speech), the per-language
choice of detector with its fallback."""

from __future__ import annotations

import logging
import re
import wave

import numpy as np
import pytest

from agent import config
from agent.audio import resample
from agent.plugins import smart_turn
from tests.speech import DICKENS
from tests.speech import frames as to_frames

pytestmark = pytest.mark.unit


def plan(env: dict[str, str]) -> config.Plan:
    return config.resolve(config.Settings.from_env(env, dotenv=False, cli={}))


def dickens() -> np.ndarray:
    with wave.open(str(DICKENS)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())
    return resample(pcm[:, 0].astype(np.float32) / 32768, rate)


def with_silence(audio: np.ndarray, seconds: float = 0.2) -> np.ndarray:
    return np.concatenate([audio, np.zeros(int(seconds * 16000), np.float32)])


def test_smart_turn_tells_a_pause_between_clauses_from_the_end():
    """Real read speech: "it was the best of times, it was the worst | of times, | it was the
    age of wisdom, |" are pauses (a list goes on); the recording's last words end it."""
    audio, model = dickens(), smart_turn.load()
    for clause_end in (3.62, 6.12, 10.08):
        p = model.probability(with_silence(audio[: int(clause_end * 16000)]))
        assert p < smart_turn.THRESHOLD, (clause_end, p)
    assert model.probability(with_silence(audio)) > smart_turn.THRESHOLD


async def test_the_stream_predicts_from_the_last_8_s_and_a_flush_forgets_them(caplog):
    detector = smart_turn.SmartTurnDetector()
    stream = detector.stream()
    for frame in to_frames(dickens()[: 12 * 16000], ms=40):
        stream.push_audio(frame)
    assert 8 * 16000 <= stream._samples < 8 * 16000 + 640
    event = await stream.predict()
    assert 0.0 <= event.end_of_turn_probability <= 1.0
    assert await stream.supports_language("de") and not await stream.supports_language("sv")
    stream.flush()
    assert stream._samples == 0
    with caplog.at_level("INFO", logger="agent.smart_turn"):
        await stream.aclose()  # the call's end says what the model cost it
    assert re.search(r"smart-turn: 1 predictions, 0\.\d\d CPU-seconds", caplog.text)


@pytest.mark.parametrize(
    "env,mode",
    [
        ({}, "vad"),  # the default: auto, by measurement (docs/turn-taking.md)
        ({"LANGUAGE": "de"}, "vad"),
        ({"TURN_DETECTION": "smart-turn", "LANGUAGE": "de"}, "smart-turn"),
        ({"TURN_DETECTION": "smart-turn", "LANGUAGE": "es"}, "smart-turn"),
        ({"TURN_DETECTION": "smart-turn", "LANGUAGE": "sv"}, "vad"),  # not among its 23
        ({"TURN_DETECTION": "smart-turn", "LANGUAGE": "el"}, "vad"),
        ({"TURN_DETECTION": "eot", "LANGUAGE": "pl"}, "vad"),  # not among v1-mini's 14
        ({"TURN_DETECTION": "eot", "LANGUAGE": "de"}, "eot"),
        ({"TURN_DETECTION": "stt", "LANGUAGE": "sv"}, "stt"),  # speaks every language
    ],
)
def test_each_call_language_gets_a_detector_that_speaks_it(env, mode):
    assert plan(env).turn_detection == mode


def test_the_fallback_is_said_once(caplog):
    config.plan._fallbacks_logged.clear()
    with caplog.at_level(logging.INFO, logger="agent.config"):
        for _ in range(3):
            handling = config.turn_handling(
                plan({"TURN_DETECTION": "smart-turn", "LANGUAGE": "sv"})
            )
    said = [r.getMessage() for r in caplog.records if "does not speak" in r.getMessage()]
    assert said == ["TURN_DETECTION=smart-turn does not speak 'sv': this call ends turns with vad"]
    assert handling["turn_detection"] == "vad"
    assert handling["endpointing"] == {"min_delay": 0.45, "max_delay": 0.45}


def test_smart_turn_becomes_livekits_streaming_detector():
    handling = config.turn_handling(plan({"TURN_DETECTION": "smart-turn"}))
    assert isinstance(handling["turn_detection"], smart_turn.SmartTurnDetector)


def test_a_missing_model_is_one_line_at_startup(monkeypatch, tmp_path):
    monkeypatch.setattr(smart_turn, "MODEL_PATH", tmp_path / "none.onnx")
    with pytest.raises(config.ConfigError) as error:
        smart_turn.model_path()
    assert "run scripts/setup.sh" in str(error.value) and "\n" not in str(error.value)
