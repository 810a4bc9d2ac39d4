"""Latency of a real call: a caller speaks utterances through a real livekit-server and the
worker on its local defaults; for each one it measures, from the end of the user's speech,
the arrival of the user's final transcript and of the agent's first audio frame, next to the
STT model's own decode time for the same audio.

    uv run python -m benchmarks.latency [--out benchmarks/results]

Prints JSON (p50/p95) and writes latency.json and latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
from livekit import rtc

from agent import config
from agent.plugins.moonshine import MoonshineSTT
from tools import stack
from tools.caller import SAMPLE_RATE, Caller, resample, synthesize
from tools.wer import wer

UTTERANCES = [
    "What a lovely day it is.",
    "Please book a table for two at seven.",
    "How far is the station from here?",
    "I would like a cup of coffee with milk.",
    "The meeting has been moved to Thursday morning.",
    "Can you remind me to call my sister tomorrow?",
    "My flight leaves at half past nine.",
    "Turn the lights off in the kitchen.",
    "What is the weather going to be like this weekend?",
    "I left my keys on the table by the door.",
    "Send the report to the whole team tonight.",
    "We need more chairs for the party.",
]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p95": round(float(np.percentile(values, 95)), 3),
        "n": len(values),
    }


async def decode_time(pcm48k: np.ndarray) -> float:
    pcm = resample(pcm48k, SAMPLE_RATE, 16000)
    frame = rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))
    stt = MoonshineSTT()
    await stt.recognize([frame])  # warm
    start = time.perf_counter()
    await stt.recognize([frame])
    return time.perf_counter() - start


async def run(server_url: str, agent_name: str) -> list[dict]:
    rows = []
    async with Caller(server_url, stack.API_KEY, stack.API_SECRET, agent_name) as caller:
        await caller.wait_for_greeting()
        for text in UTTERANCES:
            pcm = synthesize(text)
            turn = await caller.say(text, pcm)
            rows.append(
                {
                    "utterance": text,
                    "audio_s": round(len(pcm) / SAMPLE_RATE, 3),
                    "transcript": turn.user_final.text if turn.user_final else None,
                    "wer": round(wer(text, turn.user_final.text), 3) if turn.user_final else 1.0,
                    "to_final_transcript_s": round(turn.user_final.at - turn.speech_end, 3)
                    if turn.user_final
                    else None,
                    "to_first_agent_audio_s": round(turn.first_agent_audio - turn.speech_end, 3)
                    if turn.first_agent_audio
                    else None,
                    "stt_decode_s": round(await decode_time(pcm), 3),
                    "agent_said": " ".join(turn.agent_texts),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        "final transcript": [r["to_final_transcript_s"] for r in rows],
        "first agent audio": [r["to_first_agent_audio_s"] for r in rows],
        "STT decode (batch)": [r["stt_decode_s"] for r in rows],
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(rows))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + (i - 1) * 0.27, [v or 0 for v in values], 0.27, label=label)
    ax.set_xticks(x, [f"u{i + 1}" for i in x])
    ax.set_ylabel("seconds after end of user speech")
    ax.set_title("Local stack latency per utterance (Moonshine tiny, echo LLM, Hibari)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    server = stack.start_server("bench-livekit-server")
    worker = stack.start_worker(server, name="bench-worker")
    try:
        rows = asyncio.run(run(server.url, worker.agent_name))
    finally:
        stack.stop(worker.process)
        stack.stop(server.process)

    settings = config.Settings.from_env({})
    handling = config.turn_handling(settings)
    summary = {
        "stack": config.describe(settings, config.resolve(settings)),
        "endpointing": {
            "vad_min_silence_s": 0.25,  # inference.VAD default
            "turn_detector": "livekit-local-inference v1-mini",
            "min_delay_s": 0.3,  # streaming turn detector default (livekit-agents turn.py)
            "max_delay_s": 2.5,
            "interruption": handling["interruption"],
        },
        "to_final_transcript_s": percentiles(
            [r["to_final_transcript_s"] for r in rows if r["to_final_transcript_s"] is not None]
        ),
        "to_first_agent_audio_s": percentiles(
            [r["to_first_agent_audio_s"] for r in rows if r["to_first_agent_audio_s"] is not None]
        ),
        "stt_decode_s": percentiles([r["stt_decode_s"] for r in rows]),
        "mean_wer": round(float(np.mean([r["wer"] for r in rows])), 3),
        "utterances": rows,
    }
    (out / "latency.json").write_text(json.dumps(summary, indent=2))
    plot(rows, out / "latency.png")
    print(json.dumps({k: v for k, v in summary.items() if k != "utterances"}, indent=2))
    print(f"wrote {out / 'latency.json'} and {out / 'latency.png'}")


if __name__ == "__main__":
    main()
