"""Every language through a real call: WER and end of speech -> final transcript for en, de, es
and fr, on the same kind of audio (the same eight sentences, spoken by espeak-ng's voice for
each language, tools/sentences.py), through a real livekit-server and the worker on its local
defaults. The call's language is the caller's `language` attribute (what the page's picker
sets), so `local/auto` picks the engine: Moonshine tiny-en for English, Whisper base for the
others; English on Whisper base is measured too, for comparison.

    uv run python -m benchmarks.languages [--sentences 8] [--out benchmarks/results]

Prints JSON and writes languages.json and languages.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from agent.plugins.whisper import MAX_COMPRESSION_RATIO
from tools import sentences, stack
from tools.caller import Caller
from tools.wer import wer

from .latency import percentiles

# (label, the caller's attributes); the engine is what the agent publishes as stt_active
CALLS = (
    ("en", {"language": "en"}),
    ("en (Whisper base)", {"stt": "local/whisper-base", "language": "en"}),
    ("de", {"language": "de"}),
    ("es", {"language": "es"}),
    ("fr", {"language": "fr"}),
)


async def agent_stt(caller: Caller, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in caller.room.remote_participants.values():
            if p.attributes.get("stt_active"):
                return p.attributes["stt_active"]
        await asyncio.sleep(0.1)
    return "?"


async def settle(caller: Caller, quiet: float = 2.0, timeout: float = 20) -> None:
    """Wait until no user transcript came for `quiet` seconds: a late final of this utterance
    belongs to it, not to the next one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        finals = caller.user_finals()
        if not finals or time.time() - finals[-1].at >= quiet:
            return
        await asyncio.sleep(0.1)


async def one_call(server, worker, label: str, attributes: dict, count: int) -> dict:
    language = attributes["language"]
    rows = []
    async with Caller(
        server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name, attributes=attributes
    ) as caller:
        await caller.wait_for_greeting(timeout=180)
        stt = await agent_stt(caller)
        for sample in sentences.samples(language)[:count]:
            before = len(caller.user_finals())
            turn = await caller.say(sample.text, sample.pcm48k(), timeout=60)
            await settle(caller)
            finals = caller.user_finals()[before:]
            heard = " ".join(f.text for f in finals)
            rows.append(
                {
                    "said": sample.text,
                    "heard": heard,
                    "wer": round(wer(sample.text, heard), 3),
                    # the last final of the utterance: when the whole of it is transcribed
                    "to_final_transcript_s": round(finals[-1].at - turn.speech_end, 3)
                    if finals
                    else None,
                    "agent_said": " ".join(turn.agent_texts),
                }
            )
            print(json.dumps({"call": label, **rows[-1]}, ensure_ascii=False), flush=True)
    latencies = [r["to_final_transcript_s"] for r in rows if r["to_final_transcript_s"] is not None]
    return {
        "call": label,
        "language": language,
        "stt": stt,
        "wer": round(float(np.mean([r["wer"] for r in rows])), 3),
        "to_final_transcript_s": percentiles(latencies),
        "utterances": rows,
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['call']}\n{r['stt'].split(':')[0].removeprefix('local/')}" for r in results]
    fig, (wer_ax, lat_ax) = plt.subplots(1, 2, figsize=(11, 4))
    wer_ax.bar(labels, [r["wer"] for r in results], color="#4c72b0")
    wer_ax.set_ylabel("WER (mean over the sentences)")
    wer_ax.set_title("Word error rate, espeak-ng speech")
    x = np.arange(len(results))
    p50 = [r["to_final_transcript_s"]["p50"] or 0 for r in results]
    p95 = [r["to_final_transcript_s"]["p95"] or 0 for r in results]
    lat_ax.bar(x - 0.2, p50, 0.4, label="p50")
    lat_ax.bar(x + 0.2, p95, 0.4, label="p95")
    lat_ax.set_xticks(x, labels)
    lat_ax.set_ylabel("seconds")
    lat_ax.set_title("End of speech -> final transcript, in a real call")
    lat_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=8, help="per language (at most 8)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    server = stack.start_server("bench-languages-livekit-server")
    results = []
    try:
        for label, attributes in CALLS:
            # a fresh worker per call: livekit-server holds a dispatch while a worker reports
            # high load, which a busy 2-core machine does right after the previous call
            worker = stack.start_worker(server, name="bench-languages-worker")
            try:
                results.append(
                    asyncio.run(one_call(server, worker, label, attributes, args.sentences))
                )
            except TimeoutError:
                print(f"{label}: the agent never answered (dispatch held?); skipped", flush=True)
            finally:
                stack.stop(worker.process)
    finally:
        stack.stop(server.process)

    summary = {
        "audio": "the same sentences per language, espeak-ng voices (tools/sentences.py)",
        "stack": "worker on its local defaults (local/auto), language from the caller's attribute",
        "whisper": {
            "model": "Whisper base multilingual, int8, beam 1, temperature 0, language forced",
            "interim_every_s": 1.0,
            "vad_min_silence_s": 0.4,
            "max_compression_ratio": MAX_COMPRESSION_RATIO,
        },
        "results": results,
    }
    (out / "languages.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    plot(results, out / "languages.png")
    table = [{k: r[k] for k in ("call", "stt", "wer", "to_final_transcript_s")} for r in results]
    print(json.dumps(table, indent=2))
    print(f"wrote {out / 'languages.json'} and {out / 'languages.png'}")


if __name__ == "__main__":
    main()
