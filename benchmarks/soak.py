"""A soak: 4 calls at once for many minutes, callers barging in and hanging up at random, while
the memory (RSS) and open file descriptors of every process are sampled; what leaks shows as a
slope.

    uv run python -m benchmarks.soak [--minutes 10] [--calls 4] [--out benchmarks/results]

The stack is real: a livekit-server, the local gateway and a worker (MAX_CALLS = --calls) whose
calls alternate between the embedded STT and the gateway's (cartesia/ink-whisper through
LIVEKIT_INFERENCE_URL), so the gateway's websockets come and go too. Each of --calls lanes
places call after call: greeted, 1-4 turns, each turn barging in on the agent's reply (30 %) or
hung up mid-reply (20 %). Every SAMPLE_EVERY seconds: RSS and fds of livekit-server, the
gateway, the worker's main process, its call processes (their PSS summed: they are forked from
one parent and come and go), and this process (the callers). Prints JSON and writes
soak.{json,png}: slopes per minute (least squares over the samples after the first WARMUP
seconds, while the calls ran), the samples, one sample once the calls ended, and the calls'
outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil

from benchmarks import save
from tools import stack
from tools.caller import AgentsBusyError, Caller, synthesize

from .latency import UTTERANCES

SAMPLE_EVERY = 10.0  # seconds
WARMUP = 60.0  # seconds not used for the slopes: models, pools and caches fill up first
BARGE_IN, HANG_UP = 0.3, 0.2  # chances per turn
STTS = ({}, {"stt": "cartesia/ink-whisper", "language": "en"})  # embedded, through the gateway


def usage(process: psutil.Process, pss: bool = False) -> tuple[float, int]:
    """(RSS in MB, open fds) of one process; (0, 0) once it is gone. `pss`: its proportional
    share instead, for processes forked from one parent, whose RSS counts shared pages each."""
    try:
        memory = process.memory_full_info().pss if pss else process.memory_info().rss
        return memory / 2**20, process.num_fds()
    except psutil.Error:
        return 0.0, 0


def sample(
    server: stack.Server, gateway: stack.Gateway, worker: stack.Worker, started: float
) -> dict:
    root = psutil.Process(worker.process.pid)
    try:
        jobs = root.children(recursive=True)
    except psutil.Error:
        jobs = []
    named = {
        "livekit-server": psutil.Process(server.process.pid),
        "gateway": psutil.Process(gateway.process.pid),
        "worker (main)": root,
        "callers (this process)": psutil.Process(os.getpid()),
    }
    out: dict = {"t": round(time.time() - started, 1)}
    for name, process in named.items():
        rss, fds = usage(process)
        out[name] = {"rss_mb": round(rss, 1), "fds": fds}
    per_job = [usage(p, pss=True) for p in jobs]
    out["worker call processes (sum, PSS)"] = {
        "rss_mb": round(sum(r for r, _ in per_job), 1),
        "fds": sum(f for _, f in per_job),
        "count": len(jobs),
    }
    return out


async def lane(
    n: int,
    server: stack.Server,
    worker: stack.Worker,
    deadline: float,
    speech: dict,
    outcomes: Counter,
) -> None:
    """Call after call until `deadline`, each with its own random course."""
    rng = random.Random(n)
    calls = 0
    while time.time() < deadline:
        attributes = STTS[calls % len(STTS)]
        calls += 1
        try:
            async with Caller(
                server.url,
                stack.API_KEY,
                stack.API_SECRET,
                worker.agent_name,
                attributes=attributes,
            ) as caller:
                try:
                    await caller.wait_for_agent(timeout=15)
                except AgentsBusyError:
                    outcomes["busy"] += 1
                    continue
                await caller.wait_for_greeting(timeout=60)
                outcomes["greeted"] += 1
                for _ in range(rng.randint(1, 4)):
                    text = rng.choice(UTTERANCES)
                    roll = rng.random()
                    if roll < BARGE_IN:  # talk over the reply as soon as it starts
                        await caller.speak(speech[text])
                        await asyncio.sleep(rng.uniform(1.0, 2.5))
                        await caller.say(text, speech[text], timeout=30)
                        outcomes["barge-ins"] += 1
                    elif roll < BARGE_IN + HANG_UP:  # hang up while the agent answers
                        await caller.speak(speech[text])
                        await asyncio.sleep(rng.uniform(0.5, 3.0))
                        outcomes["hung up mid-reply"] += 1
                        break
                    else:
                        turn = await caller.say(text, speech[text], timeout=30)
                        outcomes["turns answered" if turn.agent_texts else "turns unanswered"] += 1
            outcomes["calls ended"] += 1
        except Exception as e:  # a broken call is counted; the soak goes on
            outcomes[f"error: {type(e).__name__}"] += 1
        await asyncio.sleep(rng.uniform(0.0, 2.0))


async def soak(
    server: stack.Server, gateway: stack.Gateway, worker: stack.Worker, minutes: float, calls: int
) -> dict:
    speech = {text: synthesize(text) for text in UTTERANCES}
    started = time.time()
    deadline = started + minutes * 60
    outcomes: Counter = Counter()
    lanes = [
        asyncio.create_task(lane(n, server, worker, deadline, speech, outcomes))
        for n in range(calls)
    ]
    samples = []
    while time.time() < deadline:
        samples.append(sample(server, gateway, worker, started))
        print(json.dumps(samples[-1]), flush=True)
        await asyncio.sleep(SAMPLE_EVERY)
    await asyncio.gather(*lanes)
    await asyncio.sleep(5)  # the last calls' processes exit
    return {
        "minutes": minutes,
        "calls_at_once": calls,
        "outcomes": dict(outcomes),
        "slopes_per_minute": slopes(samples),  # while the calls ran
        "after_the_calls": sample(server, gateway, worker, started),
        "samples": samples,
    }


def slopes(samples: list[dict]) -> dict:
    """Least-squares slope per minute of every series, over the samples after WARMUP."""
    kept = [s for s in samples if s["t"] >= WARMUP] or samples
    t = np.array([s["t"] for s in kept]) / 60
    out = {}
    for name in (k for k in kept[0] if k != "t"):
        out[name] = {}
        for series in ("rss_mb", "fds"):
            y = np.array([s[name][series] for s in kept], float)
            out[name][series] = round(float(np.polyfit(t, y, 1)[0]), 3) if len(t) > 1 else 0.0
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] / 60 for s in samples]
    names = [k for k in samples[0] if k != "t"]
    fig, (rss, fds) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name in names:
        slope = result["slopes_per_minute"][name]
        rss.plot(
            t, [s[name]["rss_mb"] for s in samples], label=f"{name} ({slope['rss_mb']:+} MB/min)"
        )
        fds.plot(t, [s[name]["fds"] for s in samples], label=f"{name} ({slope['fds']:+}/min)")
    rss.set_ylabel("RSS (MB)")
    fds.set_ylabel("open file descriptors")
    fds.set_xlabel("minutes")
    rss.legend(fontsize=7)
    fds.legend(fontsize=7)
    rss.set_title(
        f"Soak: {result['calls_at_once']} calls at once for {result['minutes']} min, callers "
        "barging in and hanging up (slopes after the first minute)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    server = stack.start_server("soak-livekit-server")
    gateway = stack.Gateway("soak-gateway")
    gateway.start()
    worker = stack.start_worker(
        server,
        {"MAX_CALLS": str(args.calls), "LIVEKIT_INFERENCE_URL": f"{gateway.base}/v1"},
        name="soak",
    )
    try:
        result = asyncio.run(soak(server, gateway, worker, args.minutes, args.calls))
    finally:
        stack.stop(worker.process)
        gateway.stop()
        stack.stop(server.process)
    summary = {k: v for k, v in result.items() if k not in ("samples", "after_the_calls")}
    print(json.dumps(summary, indent=2), flush=True)
    out = Path(args.out)
    save(out, "soak", result, lambda path: plot(result, path))


if __name__ == "__main__":
    main()
