"""STT_FALLBACK: the chain fails over when the primary dies mid-utterance, comes back to the
primary once it answers again, and a language change reaches every member.

The primary is the real `inference.STT` client talking to the local gateway (python -m agent
gateway, a subprocess speaking LiveKit Inference's wire protocol); the fallback is the local
Moonshine engine. The audio is real speech, synthesized by the bundled Hibari voice.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import inference, stt, utils
from livekit.plugins import cartesia

from agent import config
from agent.audio import resample
from agent.fallback import FallbackSTT
from agent.plugins.moonshine import MoonshineSTT
from tools import stack
from tools.caller import synthesize

pytestmark = pytest.mark.e2e

RATE = 16000
FRAME = RATE // 50  # 20 ms
FIRST, SECOND = "The weather is lovely today.", "Please book a table for two at seven."


@pytest.fixture(scope="module")
def gateway():
    """A gateway of this module's own: the test stops it and starts it again."""
    gw = stack.Gateway("gateway-fallback")
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    return {text: resample(synthesize(text), 48000, RATE) for text in (FIRST, SECOND)}


def frames(pcm: np.ndarray) -> list[rtc.AudioFrame]:
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, np.int16)])
    return [rtc.AudioFrame(c.tobytes(), RATE, 1, FRAME) for c in pcm.reshape(-1, FRAME)]


SILENCE = frames(np.zeros(RATE, np.int16))  # 1 s


async def speak(stream, *parts, between=None) -> list[str]:
    """Push the parts at real-time pace (calling `between()` after the first), then silence;
    return the final transcripts."""
    finals: list[str] = []

    async def read():
        async for ev in stream:
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives[0].text:
                finals.append(ev.alternatives[0].text)

    reader = asyncio.create_task(read())
    for i, part in enumerate(parts):
        if i == 1 and between:
            await between()
        for frame in frames(part):
            stream.push_frame(frame)
            await asyncio.sleep(0.02)
    for frame in SILENCE * 2:
        stream.push_frame(frame)
        await asyncio.sleep(0.02)
    stream.end_input()
    await asyncio.wait_for(reader, 60)
    return finals


def chain(gateway: stack.Gateway) -> FallbackSTT:
    s = config.Settings.from_env(
        {
            "STT": "cartesia/ink-whisper:en",
            "STT_FALLBACK": "local/moonshine-tiny:en",
            "LIVEKIT_INFERENCE_URL": gateway.base + "/v1",
            "LIVEKIT_API_KEY": stack.API_KEY,
            "LIVEKIT_API_SECRET": stack.API_SECRET,
        },
        dotenv=False,
    )
    return config.build_stt(config.resolve(s))


async def test_fails_over_mid_utterance_and_recovers(gateway, speech):
    adapter = chain(gateway)
    primary, fallback = adapter.members
    assert isinstance(primary, inference.STT) and isinstance(fallback, MoonshineSTT)
    changes: list[tuple[str, bool]] = []
    adapter.on("stt_availability_changed", lambda ev: changes.append((ev.stt.label, ev.available)))

    async with utils.http_context.open():
        # 1. the primary serves the first sentence; it dies before the second one
        first_sessions = len(gateway.sessions())
        finals = await speak(
            adapter.stream(), speech[FIRST], speech[SECOND], between=_stop(gateway)
        )
        assert changes and changes[0] == (primary.label, False), changes
        heard = " ".join(finals).lower()
        assert "book a table" in heard, finals  # the fallback heard the rest

        # 2. the primary is back: the fallback still serves this turn while a recovery stream
        # on the primary hears the same audio and, with a non-empty final, restores it
        gateway.start()
        first_sessions = len(gateway.sessions())
        finals = await speak(adapter.stream(), speech[SECOND])
        assert "table" in " ".join(finals).lower(), finals
        assert changes[-1] == (primary.label, True), changes

        # 3. the next turn goes to the primary again, through the gateway
        finals = await speak(adapter.stream(), speech[FIRST])
        assert "weather" in " ".join(finals).lower(), finals
        sessions = gateway.sessions()[first_sessions:]
        assert any("weather" in " ".join(s["finals"]).lower() for s in sessions), sessions
        assert adapter._active_instance is primary
    await adapter.aclose()


def _stop(gateway: stack.Gateway):
    async def stop() -> None:
        assert gateway.sessions(), "the primary never reached the gateway"
        gateway.stop()

    return stop


def test_update_options_reaches_every_member():
    """stt.FallbackAdapter has no update_options at all; FallbackSTT passes the language on."""
    assert not hasattr(stt.FallbackAdapter, "update_options")
    members = [
        inference.STT("deepgram/nova-3:en", api_key="k", api_secret="s"),
        inference.STT("cartesia/ink-whisper:en", api_key="k", api_secret="s"),
        cartesia.STT(model="ink-whisper", language="en", api_key="k"),
    ]
    adapter = FallbackSTT(members)
    adapter.update_options(language="de")
    assert [m._opts.language for m in members[:2]] == ["de", "de"]
    assert members[2]._language == "de"


def test_local_members_stream_themselves_and_still_follow_the_language():
    from agent.plugins.whisper import WhisperBaseSTT, WhisperSTT

    s = config.Settings.from_env(
        {"STT": "local/whisper-base:en", "STT_FALLBACK": "local/whisper-tiny:en"}, dotenv=False
    )
    adapter = config.build_stt(config.resolve(s))
    # both stream (their own VAD segments), so LiveKit wraps neither with a StreamAdapter
    assert not any(isinstance(m, stt.StreamAdapter) for m in adapter._stt_instances)
    assert [type(m) for m in adapter.members] == [WhisperBaseSTT, WhisperSTT]
    adapter.update_options(language="en")
    with pytest.raises(ValueError, match="whisper-tiny does not speak 'de'"):
        adapter.update_options(language="de")  # config refuses this before it gets here
