"""Where a real call's CPU goes, thread by thread: the worker on its defaults and N callers
(in this process) talking turn after turn through a real livekit-server; over a window in the
middle of the calls, the CPU of every thread of the worker's processes (native ones
included), of the callers and of livekit-server, from /proc.

    uv run python -m benchmarks.call_threads [--calls 1,8] [--seconds 40] [--out benchmarks/results]
    uv run python -m benchmarks.call_threads --tuning [--calls 4]

With --tuning, the same calls once per entry of TUNING (the defaults, then each of the
project's process settings put back to LiveKit's own): tuning.{json,png}, what each costs.

Prints JSON (cores per call by thread name, for each number of calls at once) and writes
call_threads.{json,png}. Python threads are
told apart as the call's event loop (a job process's main thread), the call's other Python
threads (engine threads, executors) and the worker's own process; native threads keep their OS names
(WebRTC's AudioEncoderQueue, SyntheticAudioDevice, the FFI's tokio-rt-worker, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import psutil

from benchmarks import save
from tools import stack
from tools.caller import synthesize

from .capacity import one_call
from .latency import UTTERANCES

TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(pids: list[int], worker: int) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> (label, CPU seconds so far) for every thread of `pids`."""
    out = {}
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            if name.startswith("python"):
                if pid == worker:  # LiveKit's IPC with the calls, load reports, admission
                    name = "python (worker process)"
                else:  # engine threads (Moonshine, silero, end of turn), executors (TTS)
                    name = "python (call event loop)" if tid == pid else "python (call threads)"
            out[(pid, tid)] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return out


def cores_by_name(before: dict, after: dict, seconds: float) -> Counter:
    cores: Counter = Counter()
    for key, (name, cpu) in after.items():
        if key in before:
            cores[name] += (cpu - before[key][1]) / seconds
    return cores


async def measure(server: stack.Server, worker: stack.Worker, calls: int, seconds: float) -> dict:
    speech = {text: synthesize(text) for text in UTTERANCES}
    loop = asyncio.get_running_loop()
    start = time.time() + 1
    turns = 2 + int(seconds / 3)  # a turn takes ~4 s: the calls outlast the window
    tasks = [
        asyncio.create_task(
            one_call(
                server.url,
                worker.agent_name,
                start + 0.5 * i,
                [UTTERANCES[(i + k) % len(UTTERANCES)] for k in range(turns)],
                speech,
            )
        )
        for i in range(calls)
    ]
    await asyncio.sleep(1 + 8 + 0.5 * calls)  # every call greeted and talking
    root = psutil.Process(worker.process.pid)
    pids = [root.pid, *(p.pid for p in root.children(recursive=True))]
    me, server_pid = os.getpid(), server.process.pid
    before = thread_cpu(pids, root.pid), thread_cpu([me], 0), thread_cpu([server_pid], 0)
    t0 = loop.time()
    await asyncio.sleep(seconds)
    after = thread_cpu(pids, root.pid), thread_cpu([me], 0), thread_cpu([server_pid], 0)
    elapsed = loop.time() - t0
    done = await asyncio.gather(*tasks)
    worker_cores = cores_by_name(before[0], after[0], elapsed)
    total = sum(worker_cores.values())
    return {
        "calls": calls,
        "seconds": round(elapsed, 1),
        "calls_failed": sum(bool(c.error) for c in done),
        "worker_cores_per_call": round(total / calls, 3),
        "worker_cores_per_call_by_thread": {
            name: round(c / calls, 4) for name, c in worker_cores.most_common()
        },
        "caller_cores_per_call": round(
            sum(cores_by_name(before[1], after[1], elapsed).values()) / calls, 3
        ),
        "livekit_server_cores": round(sum(cores_by_name(before[2], after[2], elapsed).values()), 3),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results[0]["worker_cores_per_call_by_thread"])
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        cores = [r["worker_cores_per_call_by_thread"].get(n, 0.0) for n in names]
        ax.barh(
            [y + i * width for y in range(len(names))], cores, width, label=f"{r['calls']} at once"
        )
    ax.set_yticks([y + width * (len(results) - 1) / 2 for y in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel("worker cores per call")
    ax.set_title("Where a call's worker CPU goes, by thread")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# What agent/__main__.py sets for every call's process, put back to LiveKit's default: it
# stays only while the defaults cost less than its variant (benchmarks/README.md)
TUNING = {
    "the project's defaults": {},
    "a media thread per core": {"TOKIO_WORKER_THREADS": str(os.cpu_count())},
}


def plot_tuning(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh([r["variant"] for r in rows], [r["worker_cores_per_call"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"worker cores per call ({rows[0]['calls']} calls at once)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(calls: int, seconds: float, env: dict[str, str]) -> dict:
    server = stack.start_server("call-threads-livekit-server")
    worker = stack.start_worker(server, {"MAX_CALLS": str(calls), **env}, name="call-threads")
    try:
        return asyncio.run(measure(server, worker, calls, seconds))
    finally:
        stack.stop(worker.process, server.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,8", help="numbers of calls at once, each a run")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--tuning", action="store_true", help="each of TUNING, at --calls")
    args = parser.parse_args()
    levels = [int(n) for n in args.calls.split(",")]
    results = []
    if args.tuning:
        for variant, env in TUNING.items():
            results.append({"variant": variant, "env": env, **run(levels[-1], args.seconds, env)})
            print(json.dumps(results[-1], indent=2), flush=True)
        save(Path(args.out), "tuning", results, lambda path: plot_tuning(results, path))
        return
    for calls in levels:
        results.append(run(calls, args.seconds, {}))
        print(json.dumps(results[-1], indent=2), flush=True)
    save(Path(args.out), "call_threads", results, lambda path: plot(results, path))


if __name__ == "__main__":
    main()
