"""Hibari as a LiveKit TTS plugin: Apache-2.0 English voices, offline, ~100x realtime on a core.

The "heart" voice ships inside the `hibari-tts` wheel; other voices would download on first use,
which fails offline, so only bundled voices are offered (see agent/catalog.py).
"""

from __future__ import annotations

import asyncio
import functools
import threading

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts, utils

SAMPLE_RATE = 24000
# Hibari starts every utterance with ~0.32 s of silence: the caller would wait for it before
# hearing the answer, so the first chunk is trimmed to this much lead-in.
LEAD_IN_S = 0.02
SILENCE = 0.01  # |sample| below this is silence (about -40 dBFS)
_g2p_lock = threading.Lock()  # the G2P keeps per-call state; the ONNX session is thread-safe
_load_lock = threading.Lock()  # job threads prewarm together


@functools.cache
def _load(voice: str):
    from hibari import Hibari

    return Hibari(voice=voice)


def load_voice(voice: str = "heart"):
    """The process-wide Hibari model for a voice (~16 MB), shared by every call."""
    with _load_lock:
        return _load(voice)


class HibariTTS(tts.TTS):
    fork_safe = True  # loaded before a fork, its onnxruntime session works in the child

    def __init__(self, *, voice: str = "heart", speed: float = 1.0) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self._voice = voice
        self._speed = speed

    @property
    def model(self) -> str:
        return "hibari"

    @property
    def provider(self) -> str:
        return "local"

    def prewarm(self) -> None:
        engine = load_voice(self._voice)
        with _g2p_lock:
            engine.phonemize("Ready.")  # loads the G2P lexicons now, not on the first reply

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> HibariStream:
        return HibariStream(tts=self, input_text=text, conn_options=conn_options)


class HibariStream(tts.ChunkedStream):
    def __init__(self, *, tts: HibariTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: HibariTTS = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine = await asyncio.to_thread(load_voice, self._tts._voice)
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )

        def phonemize() -> list[str]:
            with _g2p_lock:
                return engine.phonemize(self.input_text)

        for i, phonemes in enumerate(await asyncio.to_thread(phonemize)):
            # a fixed seed for the vocoder's noise: the same text always gives the same audio
            # (random noise moved where the lead-in trim starts, by a sample or two)
            wav = await asyncio.to_thread(
                engine.from_ids, engine.ids(phonemes), self._tts._speed, np.random.default_rng(0)
            )
            if i == 0:
                wav = trim_lead_in(wav)
            pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16)
            output_emitter.push(pcm.tobytes())
        output_emitter.flush()


def trim_lead_in(wav: np.ndarray) -> np.ndarray:
    """`wav` without its leading silence, but for LEAD_IN_S (a soft onset, not a click)."""
    loud = np.flatnonzero(np.abs(wav) >= SILENCE)
    if not len(loud):
        return wav
    return wav[max(0, loud[0] - int(LEAD_IN_S * SAMPLE_RATE)) :]
