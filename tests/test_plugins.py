"""The local engines behave as LiveKit plugins: real models, real audio."""

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import inference, llm, stt
from livekit.agents.vad import VADEventType

from agent.config.components import INPUT_FRAME_MS
from agent.plugins.echo import GREETING, EchoLLM
from agent.plugins.hibari import HibariTTS
from agent.plugins.moonshine import MoonshineSTT
from agent.plugins.onset_vad import OnsetVAD
from tools.caller import SAMPLE_RATE, insert_pause, resample, synthesize
from tools.wer import wer

pytestmark = pytest.mark.unit

SENTENCE = "Please book a table for two at seven."


def frames(pcm: np.ndarray, rate: int = SAMPLE_RATE, ms: int = 20):
    step = rate * ms // 1000
    for i in range(0, len(pcm), step):
        chunk = pcm[i : i + step]
        yield rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk))


async def stream_events(
    pcm: np.ndarray, flush_at_end: bool = True, pace: float = 0.0
) -> list[stt.SpeechEvent]:
    """`pace`: seconds between two 20 ms frames (0: all at once; the stream is then behind
    from the start, and decodes no interims)."""
    stream = MoonshineSTT().stream()
    for frame in frames(pcm):
        stream.push_frame(frame)
        if pace:
            await asyncio.sleep(pace)
    if flush_at_end:
        stream.flush()
    stream.end_input()
    return [ev async for ev in stream]


async def test_streaming_gives_interim_then_final_transcripts(monkeypatch):
    speech = synthesize(SENTENCE)
    pcm = np.concatenate([speech, np.zeros(SAMPLE_RATE, np.int16)])
    events = await stream_events(pcm, pace=0.005)  # 4x real time, as fast as a call could go
    kinds = [ev.type for ev in events]
    assert kinds[0] == stt.SpeechEventType.START_OF_SPEECH
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    finals = [
        ev
        for ev in events
        if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives[0].text
    ]
    assert len(finals) == 1
    assert wer(SENTENCE, finals[0].alternatives[0].text) <= 0.15
    assert stt.SpeechEventType.END_OF_SPEECH in kinds[events.index(finals[0]) :]


async def test_a_line_is_final_after_200_ms_of_quiet_and_the_flush_is_still_answered():
    """The final transcript comes from the audio (SETTLE_CHUNKS of quiet), not one decode
    after the session's flush, which on a busy machine came ~0.2-0.5 s later. The caller's
    speech has not ended yet (a pause mid-sentence is not a turn): the flush ends it, and is
    answered with an empty final (LiveKit waits for one after a push-to-talk release)."""
    stream = MoonshineSTT().stream()
    quiet = np.zeros(SAMPLE_RATE * 3 // 10, np.int16)  # 300 ms: the VAD has not ended it yet
    for frame in frames(np.concatenate([synthesize(SENTENCE), quiet])):
        stream.push_frame(frame)
    seen: list[stt.SpeechEvent] = []

    async def until_final() -> stt.SpeechEvent:
        async for ev in stream:
            seen.append(ev)
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                return ev
        raise AssertionError(f"no final in {[e.type for e in seen]}")

    final = await asyncio.wait_for(until_final(), 10)
    assert wer(SENTENCE, final.alternatives[0].text) <= 0.15
    assert stt.SpeechEventType.END_OF_SPEECH not in [ev.type for ev in seen]
    stream.flush()
    answer = await asyncio.wait_for(until_final(), 10)
    assert answer.alternatives[0].text == ""
    assert (await anext(stream)).type == stt.SpeechEventType.END_OF_SPEECH
    stream.end_input()


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
    assert [ev for ev in events if ev.alternatives and ev.alternatives[0].text] == []


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


async def vad_events(vad_, pcm16k: np.ndarray) -> list:
    """(type, audio seconds at the event, audio seconds the speech ended) for each edge, the
    audio pushed in the session's frames at 4x real time (the model keeps pace, as in a call)."""
    stream = vad_.stream()
    step = 16 * INPUT_FRAME_MS

    async def push() -> None:
        for i in range(0, len(pcm16k) - step + 1, step):
            stream.push_frame(rtc.AudioFrame(pcm16k[i : i + step].tobytes(), 16000, 1, step))
            await asyncio.sleep(INPUT_FRAME_MS / 4000)
        stream.end_input()

    pushing = asyncio.create_task(push())
    edges = []
    async for ev in stream:
        if ev.type in (VADEventType.START_OF_SPEECH, VADEventType.END_OF_SPEECH):
            edges.append((ev.type, ev.timestamp, ev.timestamp - ev.silence_duration))
    await pushing
    return edges


def paused_speech(pause: float = 0.4, silence: float = 0.5) -> tuple[np.ndarray, float, float]:
    """A sentence with a pause, at 16 kHz with silence around it; where the pause is (s)."""
    text = "We are going to visit my grandmother on Sunday."
    pcm, pause_at = insert_pause(synthesize(text), pause)
    pcm16k = resample(pcm, SAMPLE_RATE, 16000)
    lead = np.zeros(int(silence * 16000), np.int16)
    return np.concatenate([lead, pcm16k, lead]), silence + pause_at, silence + pause_at + pause


async def test_onset_vad_dates_a_pause_by_the_audio_not_the_models_smoothing():
    pcm, pause_start, pause_end = paused_speech()
    start, end, resumed, _ = await vad_events(OnsetVAD(inference.VAD()), pcm)
    assert [start[0], end[0], resumed[0]] == [
        VADEventType.START_OF_SPEECH,
        VADEventType.END_OF_SPEECH,
        VADEventType.START_OF_SPEECH,
    ]
    assert abs(end[2] - pause_start) <= 0.03  # silero alone: up to ~90 ms either side
    assert 0 <= resumed[1] - pause_end <= 0.03  # silero alone: ~110 ms after the onset
    plain = await vad_events(inference.VAD(), pcm)
    assert plain[2][1] - pause_end > 0.06  # what the onset saves


async def test_onset_vad_takes_back_a_click_the_model_does_not_call_speech():
    # the click comes after the model has reported the end of speech (~0.35 s in)
    pcm, pause_start, _ = paused_speech(pause=1.0)
    click_at = int((pause_start + 0.6) * 16000)
    pcm = pcm.copy()
    pcm[click_at : click_at + 80] = 8000  # 5 ms
    edges = await vad_events(OnsetVAD(inference.VAD()), pcm)
    kinds = [e[0] for e in edges[:5]]
    assert kinds == [VADEventType.START_OF_SPEECH, VADEventType.END_OF_SPEECH] * 2 + [
        VADEventType.START_OF_SPEECH
    ]
    click, taken_back = edges[2], edges[3]
    assert abs(click[1] - (pause_start + 0.6)) <= 0.03
    assert abs(taken_back[2] - edges[1][2]) <= 0.001  # the pause still counts from the word
