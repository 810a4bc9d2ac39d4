"""CPU cost of one call, component by component, on the local defaults: each engine gets the
audio of a minute-long call in which the caller speaks about half the time, and the CPU time
it used (all its threads, native ones included) is divided by the call's length.

    uv run python -m benchmarks.components [--out benchmarks/results]

Prints JSON and writes components.{json,png}. What this does not cover (audio transport through
livekit-rtc, the AgentSession's own Python) is the whole worker's CPU per call, measured by
benchmarks.capacity, minus these.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import time
from pathlib import Path

import numpy as np
from livekit import rtc

from tools.caller import SAMPLE_RATE, resample, synthesize

from .latency import UTTERANCES


def cpu() -> float:
    """This process's CPU seconds so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def call_audio() -> tuple[np.ndarray, int]:
    """48 kHz int16: each utterance followed by as much silence as it lasted (talk half the
    time), and the number of turns."""
    parts = []
    for text in UTTERANCES:
        pcm = synthesize(text)
        parts += [pcm, np.zeros(len(pcm), np.int16)]
    return np.concatenate(parts), len(UTTERANCES)


def frames(pcm: np.ndarray, rate: int, ms: int = 10):
    step = rate * ms // 1000
    for i in range(0, len(pcm) - step + 1, step):
        yield rtc.AudioFrame(pcm[i : i + step].tobytes(), rate, 1, step)


async def stt_cost(pcm16k: np.ndarray, update_interval: float) -> float:
    from livekit.agents import stt

    from agent.plugins import moonshine

    engine = moonshine.MoonshineSTT(update_interval=update_interval)
    start = cpu()
    stream = engine.stream()
    # at the pace of a call, in the 40 ms frames a call's audio comes in: fed any faster, the
    # engine is always behind and skips the interims whose cost this measures
    t0 = time.monotonic()
    for i, frame in enumerate(frames(pcm16k, 16000, ms=40)):
        stream.push_frame(frame)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.04 - time.monotonic()))
    stream.end_input()
    finals = [e async for e in stream if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert finals
    return cpu() - start


async def vad_cost(pcm48k: np.ndarray) -> float:
    from livekit.agents import inference

    start = cpu()
    stream = inference.VAD().stream()

    async def drain() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(drain())
    for frame in frames(pcm48k, SAMPLE_RATE):
        stream.push_frame(frame)
        await asyncio.sleep(0)
    stream.end_input()
    await task
    return cpu() - start


def eot_cost(pcm16k: np.ndarray, turns: int) -> float:
    import livekit.local_inference as li

    eot = li.EOT()
    eot.predict(pcm16k[:19200])  # warm
    start = cpu()
    for i in range(turns):
        eot.predict(pcm16k[i * 16000 : i * 16000 + 19200])
    return cpu() - start


def tts_cost(turns: int) -> float:
    from agent.plugins.hibari import load_voice

    voice = load_voice()
    voice("Warm up.")
    start = cpu()
    for text in UTTERANCES[:turns]:
        voice(f"You said: {text}")
    return cpu() - start


def resample_cost(pcm48k: np.ndarray) -> float:
    """The 48 -> 16 kHz resampling each engine input needs, 10 ms at a time."""
    resampler = rtc.AudioResampler(SAMPLE_RATE, 16000, quality=rtc.AudioResamplerQuality.HIGH)
    start = cpu()
    for frame in frames(pcm48k, SAMPLE_RATE):
        resampler.push(frame)
    return cpu() - start


async def run() -> dict:
    pcm48k, turns = call_audio()
    seconds = len(pcm48k) / SAMPLE_RATE
    pcm16k = resample(pcm48k, SAMPLE_RATE, 16000)
    from agent.plugins.moonshine import load_transcriber

    load_transcriber()
    costs = {
        "stt_moonshine_interim_0.5s": await stt_cost(pcm16k, 0.5),
        "stt_moonshine_interim_1.0s (default)": await stt_cost(pcm16k, 1.0),
        "stt_moonshine_interim_2.0s": await stt_cost(pcm16k, 2.0),
        "stt_moonshine_finals_only": await stt_cost(pcm16k, math.inf),
        "vad_silero": await vad_cost(pcm48k),
        "end_of_turn_v1_mini": eot_cost(pcm16k, turns),
        "tts_hibari_replies": tts_cost(turns),
        "resample_48k_to_16k": resample_cost(pcm48k),
    }
    return {
        "call_seconds": round(seconds, 1),
        "turns": turns,
        "speech_fraction": 0.5,
        "cores_per_call": {k: round(v / seconds, 4) for k, v in costs.items()},
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = summary["cores_per_call"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh(list(costs), list(costs.values()))
    ax.invert_yaxis()
    ax.set_xlabel("cores per call (the caller talks half the time)")
    ax.set_title("One call's CPU, engine by engine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    started = time.time()
    summary = asyncio.run(run())
    summary["wall_s"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "components.json").write_text(json.dumps(summary, indent=2))
    plot(summary, out / "components.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
