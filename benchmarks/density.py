"""Memory per call: N callers join, each speaks one sentence, and the worker's resident memory
is read at each level. Calls run as threads of one worker process (JOB_EXECUTOR=thread), so
the models are loaded once; this measures what an extra call costs on top.

    uv run python -m benchmarks.density [--levels 1,4,8,16] [--out benchmarks/results]

Prints JSON and writes density.json and density.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import psutil

from tools import stack
from tools.caller import Caller, synthesize
from tools.wer import wer

SENTENCE = "Please book a table for two at seven."


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


async def run(server: stack.Server, worker: stack.Worker, levels: list[int]) -> list[dict]:
    speech = synthesize(SENTENCE)
    rows = [{"calls": 0, "worker_rss_mb": round(rss_mb(worker.process.pid), 1)}]
    callers: list[Caller] = []
    try:
        for level in levels:
            new = [
                Caller(server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name)
                for _ in range(level - len(callers))
            ]
            callers += new
            await asyncio.gather(*(c.__aenter__() for c in new))
            await asyncio.gather(*(c.wait_for_greeting(timeout=120) for c in new))
            # everyone speaks at once: the worst case for the shared models
            turns = await asyncio.gather(*(c.say(SENTENCE, speech, timeout=60) for c in callers))
            heard = [t.user_final.text if t.user_final else "" for t in turns]
            rows.append(
                {
                    "calls": len(callers),
                    "worker_rss_mb": round(rss_mb(worker.process.pid), 1),
                    "transcribed": sum(wer(SENTENCE, h) <= 0.15 for h in heard),
                    "answered": sum(t.first_agent_audio is not None for t in turns),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    except asyncio.TimeoutError:
        rows.append({"calls": len(callers), "failed": "greetings did not arrive within 120 s"})
        print(json.dumps(rows[-1]), flush=True)
    finally:
        await asyncio.gather(*(c.__aexit__(None, None, None) for c in callers))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,8,12,16")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = stack.start_server("density-livekit-server")
    worker = stack.start_worker(server, name="density-worker")
    try:
        rows = asyncio.run(run(server, worker, levels))
    finally:
        stack.stop(worker.process)
        stack.stop(server.process)
    measured = [r for r in rows if "worker_rss_mb" in r]
    base, top = measured[1], measured[-1]
    per_call = (top["worker_rss_mb"] - base["worker_rss_mb"]) / max(1, top["calls"] - base["calls"])
    summary = {
        "idle_worker_rss_mb": rows[0]["worker_rss_mb"],
        "mb_per_extra_call": round(per_call, 1),
        "levels": rows,
    }
    (out / "density.json").write_text(json.dumps(summary, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["calls"] for r in measured], [r["worker_rss_mb"] for r in measured], marker="o")
    ax.set_xlabel("concurrent calls")
    ax.set_ylabel("worker RSS (MB)")
    ax.set_title(f"Worker memory: {summary['mb_per_extra_call']} MB per extra call")
    fig.tight_layout()
    fig.savefig(out / "density.png", dpi=110)
    print(json.dumps({k: v for k, v in summary.items() if k != "levels"}, indent=2))


if __name__ == "__main__":
    main()
