"""The local engines behave as LiveKit plugins: real models, real audio."""

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import llm, stt

from agent.plugins import moonshine
from agent.plugins.echo import GREETING, EchoLLM
from agent.plugins.hibari import HibariTTS
from agent.plugins.moonshine import MoonshineSTT
from tools.caller import SAMPLE_RATE, synthesize
from tools.wer import wer

pytestmark = pytest.mark.unit

SENTENCE = "Please book a table for two at seven."


def frames(pcm: np.ndarray, rate: int = SAMPLE_RATE, ms: int = 20):
    step = rate * ms // 1000
    for i in range(0, len(pcm), step):
        chunk = pcm[i : i + step]
        yield rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk))


async def stream_events(pcm: np.ndarray, flush_at_end: bool = True) -> list[stt.SpeechEvent]:
    stream = MoonshineSTT().stream()
    for frame in frames(pcm):
        stream.push_frame(frame)
    if flush_at_end:
        stream.flush()
    stream.end_input()
    return [ev async for ev in stream]


async def test_streaming_gives_interim_then_final_transcripts(monkeypatch):
    monkeypatch.setattr(moonshine, "CPU_STEPS", ())  # interims every second, however busy
    speech = synthesize(SENTENCE)
    events = await stream_events(np.concatenate([speech, np.zeros(SAMPLE_RATE, np.int16)]))
    kinds = [ev.type for ev in events]
    assert kinds[0] == stt.SpeechEventType.START_OF_SPEECH
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    finals = [ev for ev in events if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert len(finals) == 1
    assert wer(SENTENCE, finals[0].alternatives[0].text) <= 0.15
    assert kinds[-1] == stt.SpeechEventType.END_OF_SPEECH


async def test_flush_finalizes_the_line_without_trailing_silence():
    # a quarter second of silence, as when the session's VAD ends the turn: the flush, not
    # Moonshine's own endpointing, has to finish the line
    said = "What a lovely day it is."  # (tiny-en writes a cut-off "seven" as "7.3")
    pcm = np.concatenate([synthesize(said), np.zeros(SAMPLE_RATE // 4, np.int16)])
    events = await stream_events(pcm)
    finals = [ev.alternatives[0].text for ev in events if ev.type == "final_transcript"]
    assert finals and wer(said, " ".join(finals)) <= 0.15


async def test_silence_and_quiet_noise_produce_no_transcript():
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(SAMPLE_RATE * 3) * 30).astype(np.int16)  # about -60 dBFS
    events = await stream_events(np.concatenate([np.zeros(SAMPLE_RATE, np.int16), noise]))
    assert [ev for ev in events if ev.alternatives] == []


async def test_batch_recognize():
    pcm = synthesize(SENTENCE)
    event = await MoonshineSTT().recognize(list(frames(pcm)))
    assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    assert wer(SENTENCE, event.alternatives[0].text) <= 0.15


def test_moonshine_rejects_other_languages():
    try:
        MoonshineSTT(language="de")
    except ValueError as e:
        assert "only 'en'" in str(e)
    else:
        raise AssertionError("German was accepted by an English-only model")


async def test_hibari_speaks_intelligibly():
    said = "What a lovely day it is."  # no numbers: tiny-en may write them as digits
    tts = HibariTTS()
    audio = [ev.frame async for ev in tts.synthesize(said)]
    assert audio and audio[0].sample_rate == 24000
    event = await MoonshineSTT().recognize(audio)
    assert wer(said, event.alternatives[0].text) <= 0.15


async def chat(ctx: llm.ChatContext) -> str:
    stream = EchoLLM().chat(chat_ctx=ctx)
    return "".join([c.delta.content async for c in stream if c.delta and c.delta.content])


async def test_echo_llm_repeats_the_last_user_message():
    ctx = llm.ChatContext()
    ctx.add_message(role="user", content="first")
    ctx.add_message(role="assistant", content="You said: first")
    ctx.add_message(role="user", content="the weather is nice")
    assert await chat(ctx) == "You said: the weather is nice"
    assert await chat(llm.ChatContext()) == GREETING


async def test_one_model_is_shared_by_concurrent_streams():
    from agent.plugins.moonshine import load_transcriber

    speech = np.concatenate([synthesize(SENTENCE), np.zeros(SAMPLE_RATE, np.int16)])
    results = await asyncio.gather(*(stream_events(speech) for _ in range(3)))
    for events in results:
        finals = [ev.alternatives[0].text for ev in events if ev.type == "final_transcript"]
        assert wer(SENTENCE, " ".join(finals)) <= 0.15
    assert load_transcriber() is load_transcriber()


# "We are going to visit my grandmother [400 ms pause] on Sunday." in the bundled voice, as the
# agent received it in a call (through livekit-server and WebRTC, 16 kHz). The session flushed
# the STT 2.26 s in, during the pause, as it does when its end-of-turn model says "done".
PAUSED_CALL = Path(__file__).parent / "data" / "paused-sentence-as-the-agent-heard-it.wav"
FLUSHED_AT = 36160


async def test_a_line_resumed_after_a_pause_is_not_heard_as_you(monkeypatch):
    """Moonshine heard "You" in the second line's quiet lead-in and completed it as a line of
    its own; the words that followed were dropped, and the agent answered "…grandmother. You"."""
    monkeypatch.setattr(moonshine, "CPU_STEPS", ())  # the call's interim cadence
    with wave.open(str(PAUSED_CALL)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    stream = MoonshineSTT().stream()
    for part in (pcm[:FLUSHED_AT], pcm[FLUSHED_AT:]):
        for frame in frames(part, rate=16000):
            stream.push_frame(frame)
        stream.flush()
    stream.end_input()
    finals = [
        ev.alternatives[0].text
        async for ev in stream
        if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    ]
    assert wer("We are going to visit my grandmother on Sunday.", " ".join(finals)) == 0, finals
