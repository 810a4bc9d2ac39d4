"""What a caller beyond capacity gets, and what it costs the call in progress.

A worker with MAX_CALLS=1 (CPU_PRESSURE_LIMIT=0: capacity alone) and one call held; the held
caller speaks TURNS sentences before, during and after a burst of BURST callers 0.1 s apart,
each told "busy" by the worker (agent/busy.py). Per busy caller: the time from joining the
room to the agent's written message (`lk.transcription`) and to its first audible frame. For
the held call: p50/p95 from the end of its speech to its final transcript (as the agent sent
it), in each phase. And the CPU seconds the worker's own process (where busy answers run, not
the calls' processes) spent per busy answer.

    uv run python -m benchmarks.busy [--burst 8] [--out benchmarks/results]

Prints JSON and writes benchmarks/results/busy.{json,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import psutil

from benchmarks import save
from tools import stack
from tools.caller import AgentsBusyError, Caller, synthesize

from .latency import UTTERANCES, percentiles, since

TURNS = 4  # per phase
BURST_SPACING_S = 0.1
TOLD_WAIT_S = 15.0  # for a busy caller's audio once told
AGENT_WAIT_S = 30.0


async def busy_caller(server: stack.Server, agent_name: str, start_at: float) -> dict:
    await asyncio.sleep(max(0.0, start_at - time.time()))
    out: dict = {"text_after_s": None, "audio_after_s": None, "told": "", "error": ""}
    try:
        async with Caller(server.url, stack.API_KEY, stack.API_SECRET, agent_name) as c:
            try:  # the time it takes, not the no-worker timer: a loaded machine is slow
                await c.wait_for_agent(timeout=AGENT_WAIT_S)
                out["error"] = "served"
                return out
            except AgentsBusyError as e:
                if not c.agent_finals():
                    out["error"] = e.message
                    return out
                out["told"] = e.message
            joined = c.joined_at
            out["text_after_s"] = since(c.agent_finals()[-1].at, joined)
            deadline = time.time() + TOLD_WAIT_S
            while not c._loud_at and time.time() < deadline:
                await asyncio.sleep(0.05)
            out["audio_after_s"] = since(c._loud_at[0] if c._loud_at else None, joined)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"[:200]
    return out


async def phase(held: Caller, speech: dict, texts: list[str]) -> list[float | None]:
    sent = []
    for text in texts:
        turn = await held.say(text, speech[text], timeout=30)
        sent.append(since(turn.user_final.sent if turn.user_final else None, turn.speech_end))
    return sent


async def run(server: stack.Server, worker: stack.Worker, burst: int) -> dict:
    speech = {t: synthesize(t) for t in UTTERANCES}
    texts = [UTTERANCES[i % len(UTTERANCES)] for i in range(3 * TURNS)]
    main = psutil.Process(worker.process.pid)  # its own CPU: not the calls' processes

    def cpu() -> float:
        t = main.cpu_times()
        return t.user + t.system

    async with Caller(server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name) as held:
        await held.wait_for_agent(timeout=60)
        await held.wait_for_greeting()
        cpu0, t0 = cpu(), time.time()
        before = await phase(held, speech, texts[:TURNS])
        idle_cpu_per_s = (cpu() - cpu0) / (time.time() - t0)
        start_at = time.time() + 0.5
        callers = asyncio.gather(
            *(
                busy_caller(server, worker.agent_name, start_at + i * BURST_SPACING_S)
                for i in range(burst)
            )
        )
        cpu1, t1 = cpu(), time.time()
        during = await phase(held, speech, texts[TURNS : 2 * TURNS])
        told = await callers
        burst_cpu = cpu() - cpu1 - idle_cpu_per_s * (time.time() - t1)
        after = await phase(held, speech, texts[2 * TURNS :])
    ok = [t for t in told if t["told"] and not t["error"]]
    return {
        "burst": burst,
        "told_busy": len(ok),
        "errors": sorted({t["error"] for t in told if t["error"]}),
        "messages": sorted({t["told"] for t in ok}),
        "text_after_join_s": percentiles([t["text_after_s"] for t in ok])
        | {"max": max((t["text_after_s"] or 0 for t in ok), default=None)},
        "audio_after_join_s": percentiles([t["audio_after_s"] for t in ok])
        | {"max": max((t["audio_after_s"] or 0 for t in ok), default=None)},
        "worker_process_cpu_s_per_busy_answer": round(burst_cpu / max(len(ok), 1), 3),
        "held_call_to_final_sent_s": {
            "before": percentiles(before),
            "during_burst": percentiles(during),
            "after": percentiles(after),
        },
        "busy_callers": told,
        "machine_load_1min": round(os.getloadavg()[0], 1),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    callers = [c for c in result["busy_callers"] if c["told"]]
    x = range(1, len(callers) + 1)
    ax1.plot(x, [c["text_after_s"] for c in callers], "o", label="written message")
    ax1.plot(x, [c["audio_after_s"] for c in callers], "s", label="first audible frame")
    ax1.axhline(3, color="red", linestyle=":", label="3 s")
    ax1.set_xlabel("busy caller (0.1 s apart)")
    ax1.set_ylabel("seconds after joining")
    ax1.set_title(f"Burst of {result['burst']} callers beyond capacity")
    ax1.legend(fontsize=8)
    phases = result["held_call_to_final_sent_s"]
    names = list(phases)
    for q, offset in (("p50", -0.2), ("p95", 0.2)):
        ax2.bar(
            [i + offset for i in range(len(names))],
            [phases[n][q] or 0 for n in names],
            0.4,
            label=q,
        )
    ax2.set_xticks(range(len(names)), names)
    ax2.set_ylabel("end of speech -> final transcript sent (s)")
    ax2.set_title("The call in progress")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = stack.start_server("busy-livekit-server")
    worker = stack.start_worker(server, {"MAX_CALLS": "1"}, name="busy-worker")
    try:
        result = asyncio.run(run(server, worker, args.burst))
    finally:
        stack.stop(worker.process, server.process)
    result["cpus"] = os.cpu_count()
    save(out, "busy", result, lambda path: plot(result, path))
    print(json.dumps({k: v for k, v in result.items() if k != "busy_callers"}, indent=2))


if __name__ == "__main__":
    main()
