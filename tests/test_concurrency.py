"""The shared local engines under concurrency: many streams at once in one process, opened and
closed mid-utterance, give exactly the transcripts they give one at a time, and never crash.

(Before the engine thread, four concurrent Moonshine streams crashed the process with SIGSEGV
or "free(): invalid size", and closing a stream while it decoded crashed it too.)
"""

import asyncio
import random

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt

from agent.plugins.hibari import HibariTTS
from agent.plugins.moonshine import MoonshineSTT
from tools.caller import SAMPLE_RATE, synthesize
from tools.wer import normalize

pytestmark = pytest.mark.slow

SENTENCES = [
    "Please book a table for two at seven.",
    "How far is the station from here?",
    "Turn the lights off in the kitchen.",
    "We need more chairs for the party.",
]
STREAMS = 16
FRAME = SAMPLE_RATE // 50  # 20 ms, as a call's audio arrives


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    tail = np.zeros(SAMPLE_RATE // 2, np.int16)  # Moonshine ends the line on this silence
    return [np.concatenate([synthesize(s), tail]) for s in SENTENCES]


async def finals(stt_: MoonshineSTT, pcm: np.ndarray, pace: float = 0.0) -> list[str]:
    stream = stt_.stream()
    for i in range(0, len(pcm), FRAME):
        chunk = pcm[i : i + FRAME]
        stream.push_frame(rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, len(chunk)))
        if pace:
            await asyncio.sleep(pace)  # let the other streams interleave
    stream.flush()
    stream.end_input()
    return [
        ev.alternatives[0].text
        async for ev in stream
        if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    ]


async def abandoned(stt_: MoonshineSTT, pcm: np.ndarray, cut: float) -> None:
    """A caller who hangs up mid-utterance: the stream is closed while it may be decoding."""
    stream = stt_.stream()
    for i in range(0, int(len(pcm) * cut), FRAME):
        chunk = pcm[i : i + FRAME]
        stream.push_frame(rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, len(chunk)))
        await asyncio.sleep(0)
    await asyncio.sleep(random.uniform(0, 0.05))
    await stream.aclose()


async def test_sixteen_moonshine_streams_with_churn_match_the_serial_transcripts(speech):
    stt_ = MoonshineSTT()
    serial = [await finals(stt_, pcm) for pcm in speech]
    assert all(serial), serial

    random.seed(9)
    calls = [finals(stt_, speech[i % len(speech)], pace=0.001) for i in range(STREAMS)]
    churn = [
        abandoned(stt_, speech[i % len(speech)], cut=random.uniform(0.2, 0.9))
        for i in range(STREAMS)
    ]
    results = await asyncio.wait_for(asyncio.gather(*calls, *churn), timeout=120)

    # the same words: Moonshine writes a number as a digit or a word depending on where its
    # line ends, which moves by a few ms with the decodes the stream had time for
    assert [[normalize(t) for t in r] for r in results[:STREAMS]] == [
        [normalize(t) for t in serial[i % len(speech)]] for i in range(STREAMS)
    ]


async def test_concurrent_hibari_syntheses_match_the_serial_audio():
    # Hibari's ONNX session is shared by every call (onnxruntime allows concurrent runs)
    tts = HibariTTS()
    texts = ["You said: how far is the station from here?", "Hello there."]

    async def audio(text: str) -> np.ndarray:
        frames = [ev.frame async for ev in tts.synthesize(text)]
        return np.frombuffer(rtc.combine_audio_frames(frames).data, np.int16) / 32768

    serial = [await audio(t) for t in texts]
    together = await asyncio.gather(*(audio(texts[i % 2]) for i in range(8)))
    for i, pcm in enumerate(together):
        expected = serial[i % 2]
        assert len(pcm) == len(expected)
        assert np.abs(pcm - expected).max() < 0.02
