"""Latency of a real call, turn-taking settings side by side.

For each configuration in CONFIGS a worker starts on the local defaults plus that
configuration's settings; a caller speaks the same utterances through a real livekit-server and
measures, from the end of its speech, the arrival of its final transcript and of the agent's
first audible frame. Then it speaks PAUSED sentences, each with a 400 ms pause in the middle,
and counts the answers: exactly one, after the end, is right; an answer that starts inside the
pause is the agent cutting in. The STT model's own decode time is measured once.

    uv run python -m benchmarks.latency [--configs default,vad-0.5] [--out benchmarks/results]

Prints one JSON line per utterance and a table; writes latency.json and latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from livekit import rtc

from agent import config
from agent.plugins.moonshine import MoonshineSTT
from tools import stack
from tools.caller import SAMPLE_RATE, Caller, insert_pause, resample, synthesize
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
# spoken with a pause in the middle (at the quietest point between 30 % and 75 % of the audio,
# a word boundary): "I need a taxi to the airport | at five in the morning."
PAUSED = [
    "I need a taxi to the airport at five in the morning.",
    "Remind me to water the plants when I get home.",
    "I would like to order a large pizza with mushrooms.",
    "Could you play some relaxing music in the living room?",
    "We are going to visit my grandmother on Sunday.",
    "Please book a table for two people at seven tonight.",
]
PAUSE_S = 0.4

# name -> settings (environment variables) over the local defaults; "default" is what ships
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "livekit-eot": {  # LiveKit's defaults for its audio end-of-turn model (the old settings)
        "MIN_ENDPOINTING_DELAY": "0.3",
        "MAX_ENDPOINTING_DELAY": "2.5",
        "PREEMPTIVE_TTS": "false",
    },
    "eot-0.45": {"TURN_DETECTION": "eot", "MIN_ENDPOINTING_DELAY": "0.45"},
    "eot-0.5": {"TURN_DETECTION": "eot", "MIN_ENDPOINTING_DELAY": "0.5"},
    "eot-0.6": {"TURN_DETECTION": "eot", "MIN_ENDPOINTING_DELAY": "0.6"},
    "vad-0.45": {"TURN_DETECTION": "vad", "MIN_ENDPOINTING_DELAY": "0.45"},
    "vad-0.5": {"TURN_DETECTION": "vad", "MIN_ENDPOINTING_DELAY": "0.5"},
    "vad-0.6": {"TURN_DETECTION": "vad", "MIN_ENDPOINTING_DELAY": "0.6"},
    "stt": {"TURN_DETECTION": "stt"},  # Moonshine's own end of line
    "manual": {"TURN_DETECTION": "manual"},  # push-to-talk, released at the end of speech
}


def percentiles(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
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


def loud(pcm: np.ndarray) -> bool:
    return bool(len(pcm)) and float(np.sqrt(np.mean(pcm**2))) > 0.01


def since(t: float | None, start: float) -> float | None:
    return round(t - start, 3) if t else None


async def run(server_url: str, agent_name: str, push_to_talk: bool) -> tuple[list, list]:
    rows, paused = [], []
    async with Caller(server_url, stack.API_KEY, stack.API_SECRET, agent_name) as caller:
        await caller.wait_for_greeting()
        for text in UTTERANCES:
            pcm = synthesize(text)
            turn = await caller.say(text, pcm, push_to_talk=push_to_talk)
            heard = turn.user_final.text if turn.user_final else ""
            rows.append(
                {
                    "utterance": text,
                    "audio_s": round(len(pcm) / SAMPLE_RATE, 3),
                    "transcript": heard,
                    "wer": round(wer(text, heard), 3) if heard else 1.0,
                    "to_final_transcript_s": since(
                        turn.user_final and turn.user_final.at, turn.speech_end
                    ),
                    "to_first_agent_audio_s": since(turn.first_agent_audio, turn.speech_end),
                    "agent_said": " ".join(turn.agent_texts),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        for text in PAUSED:
            pcm, pause_at = insert_pause(synthesize(text), PAUSE_S)
            started = time.time()
            turn = await caller.say(text, pcm, push_to_talk=push_to_talk)
            pause = (started + pause_at, started + pause_at + PAUSE_S)
            # loud agent audio before the end of the sentence: the agent cut in
            early = [t for t, f in caller.agent_frames if started < t < turn.speech_end and loud(f)]
            paused.append(
                {
                    "utterance": text,
                    "pause_at_s": round(pause_at, 3),
                    "answers": len(turn.agent_texts),
                    "cut_in": bool(early),
                    "cut_in_after_pause_start_s": round(early[0] - pause[0], 3) if early else None,
                    "to_first_agent_audio_s": since(turn.first_agent_audio, turn.speech_end),
                    "agent_said": turn.agent_texts,
                }
            )
            print(json.dumps(paused[-1]), flush=True)
    return rows, paused


def summarize(name: str, env: dict[str, str], rows: list, paused: list) -> dict:
    settings = config.Settings.from_env(env)
    return {
        "config": name,
        "settings": env,
        "turn_handling": {
            k: v for k, v in config.turn_handling(settings).items() if k != "turn_detection"
        }
        | {"turn_detection": settings.turn_detection},
        "to_final_transcript_s": percentiles([r["to_final_transcript_s"] for r in rows]),
        "to_first_agent_audio_s": percentiles([r["to_first_agent_audio_s"] for r in rows]),
        "no_reply": sum(r["to_first_agent_audio_s"] is None for r in rows),
        "mean_wer": round(float(np.mean([r["wer"] for r in rows])), 3),
        "paused_one_answer": sum(p["answers"] == 1 and not p["cut_in"] for p in paused),
        "paused_cut_in": sum(p["cut_in"] for p in paused),
        "paused_n": len(paused),
        "utterances": rows,
        "paused": paused,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| config | settings | first audio p50 | p95 | final transcript p50 | no reply | "
        "paused: one answer / cut in | WER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        settings = " ".join(f"{k}={v}" for k, v in r["settings"].items()) or "(shipped defaults)"
        audio, final = r["to_first_agent_audio_s"], r["to_final_transcript_s"]
        lines.append(
            f"| {r['config']} | {settings} | {audio['p50']} | {audio['p95']} | {final['p50']} | "
            f"{r['no_reply']} | {r['paused_one_answer']}/{r['paused_n']} / {r['paused_cut_in']} | "
            f"{r['mean_wer']} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [r["config"] for r in results]
    data = [
        [u["to_first_agent_audio_s"] for u in r["utterances"] if u["to_first_agent_audio_s"]]
        or [0.0]
        for r in results
    ]
    ax.boxplot(data, whis=(5, 95))
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
    ax.axhline(0.6, color="green", ls="--", lw=1, label="p50 target 0.6 s")
    ax.axhline(1.2, color="orange", ls="--", lw=1, label="p95 target 1.2 s")
    for i, r in enumerate(results, start=1):
        ax.annotate(
            f"pause: {r['paused_one_answer']}/{r['paused_n']} ok",
            (i, 0.02),
            ha="center",
            fontsize=8,
            xycoords=("data", "axes fraction"),
        )
    ax.set_ylabel("end of user speech -> first agent audio (s)")
    ax.set_title("Turn-taking settings, local stack (Moonshine tiny, echo LLM, Hibari)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def conditions() -> dict:
    load = os.getloadavg()
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_1_5_15": [round(x, 2) for x in load],
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"error: unknown config {unknown}; known: {', '.join(CONFIGS)}")

    summary = {"conditions": conditions(), "configs": []}
    stt_decode = [asyncio.run(decode_time(synthesize(t))) for t in UTTERANCES[:4]]
    summary["stt_decode_s"] = percentiles(stt_decode)
    server = stack.start_server("bench-livekit-server")
    try:
        for name in names:
            env = CONFIGS[name]
            worker = stack.start_worker(server, env, name=f"bench-{name}")
            try:
                manual = env.get("TURN_DETECTION") == "manual"
                rows, paused = asyncio.run(run(server.url, worker.agent_name, manual))
            finally:
                stack.stop(worker.process)
            summary["configs"].append(summarize(name, env, rows, paused))
            print(table(summary["configs"][-1:]), flush=True)
    finally:
        stack.stop(server.process)
    summary["conditions"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "latency.json").write_text(json.dumps(summary, indent=2))
    plot(summary["configs"], out / "latency.png")
    print(json.dumps(summary["conditions"]))
    print(table(summary["configs"]))
    print(f"wrote {out / 'latency.json'} and {out / 'latency.png'}")


if __name__ == "__main__":
    main()
