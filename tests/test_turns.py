"""Turn-taking settings: each TURN_DETECTION mode becomes what LiveKit's AgentSession takes,
the other turn settings are validated in one line, and a dispatch may override them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import inference
from livekit.agents.voice import io

from agent import config, push_to_talk, switching
from agent.plugins.hibari import SAMPLE_RATE, HibariTTS, trim_lead_in

pytestmark = pytest.mark.unit


def settings(env: dict[str, str]) -> config.Settings:
    return config.Settings.from_env(env, dotenv=False, cli={})


def plan(env: dict[str, str]) -> config.Plan:
    return config.resolve(settings(env))


@pytest.mark.parametrize(
    "mode,expected,delays",
    [
        ("eot", "turn-detector-v1-mini", (0.45, 0.8)),
        ("vad", "vad", (0.45, 0.45)),
        ("stt", "stt", (0.0, 0.0)),
        ("manual", "manual", (0.0, 0.0)),
    ],
)
def test_each_mode_becomes_livekits_turn_detection(mode, expected, delays):
    handling = config.turn_handling(plan({"TURN_DETECTION": mode}))
    detector = handling["turn_detection"]
    if mode == "eot":  # the audio end-of-turn model, in-process, never LiveKit's cloud one
        assert isinstance(detector, inference.TurnDetector)
        assert detector.model == expected
    else:
        assert detector == expected
    assert (handling["endpointing"]["min_delay"], handling["endpointing"]["max_delay"]) == delays


def test_the_other_turn_settings_reach_turn_handling():
    handling = config.turn_handling(
        plan(
            {
                "MIN_ENDPOINTING_DELAY": "0.4",
                "MAX_ENDPOINTING_DELAY": "2",
                "ALLOW_INTERRUPTIONS": "false",
                "MIN_INTERRUPTION_DURATION": "0.8",
                "MIN_INTERRUPTION_WORDS": "2",
                "PREEMPTIVE_GENERATION": "off",
                "PREEMPTIVE_TTS": "no",
                "RESUME_FALSE_INTERRUPTION": "false",
                "FALSE_INTERRUPTION_TIMEOUT": "1.5",
            }
        )
    )
    assert handling["endpointing"] == {"min_delay": 0.4, "max_delay": 2.0}
    assert handling["interruption"] == {
        "enabled": False,
        "mode": "vad",  # LiveKit's adaptive interruption is a cloud model
        "min_duration": 0.8,
        "min_words": 2,
        "resume_false_interruption": False,
        "false_interruption_timeout": 1.5,
        # the caller's words over a reply that may not be interrupted are answered after it
        "discard_audio_if_uninterruptible": False,
    }
    assert handling["preemptive_generation"] == {"enabled": False, "preemptive_tts": False}


def test_shipped_defaults():
    handling = config.turn_handling(plan({}))
    assert handling["turn_detection"] == "vad"  # auto, in English (catalog, by measurement)
    assert handling["endpointing"] == {"min_delay": 0.45, "max_delay": 0.45}
    assert handling["interruption"]["enabled"] is True
    assert handling["preemptive_generation"] == {"enabled": True, "preemptive_tts": True}


def test_a_longer_min_delay_stretches_the_default_max():
    assert plan({"MIN_ENDPOINTING_DELAY": "1.5"}).endpointing == (1.5, 1.5)
    assert plan({"TURN_DETECTION": "stt", "MIN_ENDPOINTING_DELAY": "0.2"}).endpointing == (
        0.2,
        0.2,
    )


BAD = [
    (
        {"TURN_DETECTION": "semantic"},
        "TURN_DETECTION (environment): Input should be 'auto', 'eot', 'smart-turn', 'vad', 'stt', "
        "'manual' or 'multilingual'",
    ),
    (
        {"MIN_ENDPOINTING_DELAY": "0.8", "MAX_ENDPOINTING_DELAY": "0.5"},
        "MAX_ENDPOINTING_DELAY=0.5 is below MIN_ENDPOINTING_DELAY=0.8",
    ),
    ({"MIN_ENDPOINTING_DELAY": "-1"}, "MIN_ENDPOINTING_DELAY (environment)"),
    ({"MIN_ENDPOINTING_DELAY": "soon"}, "MIN_ENDPOINTING_DELAY (environment)"),
    ({"ALLOW_INTERRUPTIONS": "maybe"}, "ALLOW_INTERRUPTIONS (environment)"),
    ({"MIN_INTERRUPTION_WORDS": "1.5"}, "MIN_INTERRUPTION_WORDS (environment)"),
    ({"MIN_INTERRUPTION_DURATION": "-0.1"}, "MIN_INTERRUPTION_DURATION (environment)"),
    ({"PREEMPTIVE_TTS": "2"}, "PREEMPTIVE_TTS (environment)"),
    (
        {"TURN_DETECTION": "multilingual"},
        "TURN_DETECTION=multilingual (environment) needs livekit-plugins-turn-detector==1.8.9",
    ),
    (
        {"NOISE_CANCELLATION": "bvc"},
        "NOISE_CANCELLATION=bvc (environment) is LiveKit Cloud's noise cancellation: it runs "
        "only in rooms on LiveKit Cloud",
    ),
    (
        {
            "NOISE_CANCELLATION": "bvc-telephony",
            "LIVEKIT_URL": "wss://x.livekit.cloud",
            "LIVEKIT_API_KEY": "k",
            "LIVEKIT_API_SECRET": "s",
        },
        "NOISE_CANCELLATION=bvc-telephony (environment) needs `uv add "
        "livekit-plugins-noise-cancellation==0.3.2`",
    ),
    ({"NOISE_CANCELLATION": "krisp"}, "NOISE_CANCELLATION (environment): Input should be"),
]


@pytest.mark.parametrize("env,words", BAD, ids=[f"{i:02d}" for i in range(len(BAD))])
def test_bad_turn_settings_are_one_clear_line(env, words):
    with pytest.raises(config.ConfigError) as error:
        config.resolve(settings(env))
    message = str(error.value)
    assert words in message
    assert "\n" not in message


def test_multilingual_refusal_says_why_and_what_runs_instead():
    with pytest.raises(config.ConfigError) as error:
        config.resolve(settings({"TURN_DETECTION": "multilingual"}))
    assert "Hugging Face" in str(error.value)
    assert "TURN_DETECTION=eot" in str(error.value)


def test_a_dispatch_may_choose_how_its_call_takes_turns():
    metadata = '{"turn_detection": "manual", "allow_interruptions": false}'
    call = switching.with_dispatch(plan({}), metadata)
    assert call.turn_detection == "manual"
    assert call.settings.source("turn_detection") == "dispatch"
    assert config.turn_handling(call)["interruption"]["enabled"] is False
    assert "TURN_DETECTION=manual [dispatch]" in config.describe(call)


def test_a_bad_dispatch_turn_setting_is_refused():
    with pytest.raises(config.ConfigError) as error:
        switching.with_dispatch(plan({}), '{"min_endpointing_delay": -2}')
    assert "MIN_ENDPOINTING_DELAY (dispatch)" in str(error.value)


def test_the_caller_cannot_change_turn_taking():
    with pytest.raises(config.ConfigError) as error:
        settings({}).with_layer("participant", {"turn_detection": "vad"})
    assert "'turn_detection' cannot be set here" in str(error.value)


def test_room_options_read_the_callers_audio_in_40ms_frames_without_a_second_agc():
    options = config.room_options(plan({}))
    assert options.audio_input.frame_size_ms == 40
    assert options.audio_input.noise_cancellation is None
    assert options.audio_input.auto_gain_control is False  # the browser's microphone has one


async def test_hibari_answers_start_without_its_lead_in_silence():
    """Hibari opens each utterance with ~0.3 s of silence, which the caller would wait
    through; the plugin's first audio is speech within LEAD_IN_S."""
    stream = HibariTTS().synthesize("You said: what a lovely day it is.")
    frames = [ev.frame async for ev in stream]
    pcm = np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]) / 32768
    first_loud = np.flatnonzero(np.abs(pcm) >= 0.01)[0] / SAMPLE_RATE
    assert first_loud <= 0.03
    untrimmed = np.concatenate([np.zeros(SAMPLE_RATE // 2), [0.5], np.zeros(10)])
    assert len(trim_lead_in(untrimmed)) == int(0.02 * SAMPLE_RATE) + 11


class _Microphone(io.AudioInput):
    """10 ms frames, one every 2 ms, numbered in their first sample, at `level` (speech or
    silence) in the others."""

    def __init__(self) -> None:
        super().__init__(label="microphone")
        self.count, self.attached, self.level = 0, True, 3000

    async def __anext__(self) -> rtc.AudioFrame:
        self.count += 1
        await asyncio.sleep(0.002)
        samples = np.full(160, self.level, np.int16)
        samples[0] = self.count
        return rtc.AudioFrame(samples.tobytes(), 16000, 1, 160)

    def on_attached(self) -> None:
        self.attached = True

    def on_detached(self) -> None:
        self.attached = False


def _number(frame: rtc.AudioFrame) -> int:
    return int(np.frombuffer(frame.data, np.int16)[0])


async def test_push_to_talk_starts_a_turn_with_the_audio_just_before_the_press():
    microphone = _Microphone()
    pre_roll = push_to_talk.PreRoll(microphone)
    reader = asyncio.create_task(pre_roll.__anext__())  # the button is up: nothing comes
    await asyncio.sleep(0.5)
    assert not reader.done() and microphone.count > 100
    pre_roll.on_attached()  # pressed
    first = _number(await reader)
    held = round(push_to_talk.PRE_ROLL_S / 0.01)
    assert abs(first - (microphone.count - held)) <= 2, "starts PRE_ROLL_S before the press"
    following = [_number(await pre_roll.__anext__()) for _ in range(3 * held)]
    assert following == list(range(first + 1, first + 1 + 3 * held)), "in order, none lost"

    pre_roll.on_detached()  # released: the room's stream stays attached for the next pre-roll
    assert microphone.attached
    reader = asyncio.create_task(pre_roll.__anext__())
    await asyncio.sleep(push_to_talk.LATE_TAIL_S + 0.1)
    released_at = microphone.count
    pre_roll.on_attached()
    first = _number(await reader)
    assert first > released_at - held - 2, "nothing of the late tail of the last turn"

    # the caller said nothing before this press: the turn starts without the held silence
    pre_roll.on_detached()
    microphone.level = 0
    reader = asyncio.create_task(pre_roll.__anext__())
    await asyncio.sleep(push_to_talk.LATE_TAIL_S + 0.5)
    silent_until = microphone.count
    pre_roll.on_attached()
    first = _number(await reader)
    lead = round(push_to_talk.PRE_ROLL_LEAD_S / 0.01)
    assert first >= silent_until - lead - 2
