"""Sample-level audio helpers shared by the local engines and the services built on them."""

from __future__ import annotations

import numpy as np
from livekit import rtc

ENGINE_RATE = 16000  # what every local STT engine takes
# Below this RMS (about -46 dBFS) audio is silence or room noise, not speech: a local STT would
# "hear" words in it.
SPEECH_RMS = 0.005


def float_mono(frame: rtc.AudioFrame) -> np.ndarray:
    """An int16 frame as mono float32 in [-1, 1], what the local models take."""
    pcm = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return pcm.mean(axis=1).astype(np.float32) / 32768.0


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def to_int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


def resample(samples: np.ndarray, src: int, dst: int = ENGINE_RATE) -> np.ndarray:
    """Mono audio from `src` Hz to `dst` Hz with LiveKit's resampler.

    int16 in gives int16 out; float in (range [-1, 1]) gives float32 out."""
    if src == dst:
        return samples if samples.dtype == np.int16 else samples.astype(np.float32)
    pcm = to_int16(samples)
    resampler = rtc.AudioResampler(src, dst, quality=rtc.AudioResamplerQuality.HIGH)
    frames = [*resampler.push(rtc.AudioFrame(pcm.tobytes(), src, 1, len(pcm))), *resampler.flush()]
    out = np.concatenate(
        [np.frombuffer(f.data, np.int16) for f in frames] or [np.zeros(0, np.int16)]
    )
    return out if samples.dtype == np.int16 else out.astype(np.float32) / 32768.0


def _mulaw(raw: bytes) -> np.ndarray:  # G.711 mu-law, as FFmpeg's pcm_mulaw decodes it
    u = ~np.frombuffer(raw, np.uint8)
    exponent, mantissa = (u >> 4) & 7, (u & 0x0F).astype(np.int32)
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.float32) / 32768


def _alaw(raw: bytes) -> np.ndarray:  # G.711 A-law (even bits inverted; sign set = positive)
    a = np.frombuffer(raw, np.uint8) ^ 0x55
    exponent, mantissa = (a >> 4) & 7, (a & 0x0F).astype(np.int32)
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.float32) / 32768


def _scaled(dtype: str, full_scale: float):
    return lambda raw: np.frombuffer(raw, dtype).astype(np.float32) / full_scale


# Cartesia's raw encodings: name -> (bytes per sample, decoder to float32 in [-1, 1])
RAW_ENCODINGS = {
    "pcm_s16le": (2, _scaled("<i2", 32768.0)),
    "pcm_s32le": (4, _scaled("<i4", 2147483648.0)),
    "pcm_f16le": (2, _scaled("<f2", 1.0)),
    "pcm_f32le": (4, _scaled("<f4", 1.0)),
    "pcm_mulaw": (1, _mulaw),
    "pcm_alaw": (1, _alaw),
}
