"""What a call's report costs (agent/reports.py), in CPU per call, two ways.

1. Accounted: the report notes the main-thread CPU of its own work (a callback per transcript,
   a stats read per speech edge, building the report at the end: `cost` in the report); the
   stats reads' share in LiveKit's media thread is measured here, by reading the same stats
   in this process's room many times.
2. With and without: two workers, one with CALL_REPORTS=0, take the same scripted calls in
   turn; the CPU of each worker's process tree (its finished job processes included, through
   their parents' counters) over each call.

    uv run python -m benchmarks.report_cost [--calls 3] [--turns 3] [--out benchmarks/results]

Prints JSON and writes report_cost.json. The second figure is a difference of two ~5 CPU-s
totals on a machine shared with others: its noise is larger than the report's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from tools import stack
from tools.caller import Caller, synthesize

from .latency import UTTERANCES

TICKS = os.sysconf("SC_CLK_TCK")
STATS_READS = 200


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, the waited-for finished ones included."""
    total = 0.0
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime
    return total


async def one_call(server: stack.Server, worker: stack.Worker, texts: list[str], speech) -> dict:
    before = tree_cpu(worker.process.pid)
    started = time.time()
    async with Caller(server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name) as caller:
        await caller.wait_for_greeting()
        for text in texts:
            await caller.say(text, speech[text])
        stats_cost = await stats_read_cost(caller) if worker.env["CALL_REPORTS"] == "1" else None
        room = caller.room_name
    await asyncio.sleep(8)  # the job ends, writes its report, and its process is reaped
    return {
        "room": room,
        "seconds": time.time() - started,
        "worker_cpu_s": tree_cpu(worker.process.pid) - before,
        "stats_read_cpu_s": stats_cost,
    }


async def stats_read_cost(caller: Caller) -> float:
    """CPU seconds (every thread of this process) of one read of a room's WebRTC stats."""
    start = time.process_time()
    for _ in range(STATS_READS):
        await caller.room.get_rtc_stats()
    return (time.process_time() - start) / STATS_READS


def start_worker(server: stack.Server, reports: str, folder: Path) -> stack.Worker:
    env = {"CALL_REPORTS": reports, "CALL_REPORTS_DIR": str(folder), "MAX_CALLS": "1"}
    # a crowded machine takes minutes to start one
    return stack.start_worker(server, env, name=f"report-cost-{reports}", timeout=600)


async def run(calls: int, turns: int) -> dict:
    speech = {text: synthesize(text) for text in UTTERANCES}
    server = stack.start_server("report-cost-livekit")
    folder = Path(tempfile.mkdtemp(prefix="report-cost-"))
    workers = {on: start_worker(server, on, folder) for on in ("1", "0")}
    runs: dict[str, list[dict]] = {"1": [], "0": []}
    try:
        for n in range(calls):
            for on, worker in workers.items():  # in turn: a drift in load hits both alike
                texts = [UTTERANCES[(n + k) % len(UTTERANCES)] for k in range(turns)]
                runs[on].append(await one_call(server, worker, texts, speech))
    finally:
        for worker in workers.values():
            stack.stop(worker.process, server.process)
    reports = {r["room"]: r for r in map(json.loads, map(Path.read_text, folder.glob("*.json")))}
    accounted = []
    for call in runs["1"]:
        cost = reports[call["room"]]["cost"]
        cpu = cost["cpu_s"] + cost["stats_reads"] * call["stats_read_cpu_s"]
        accounted.append(
            {
                "cpu_s": round(cpu, 4),
                "cores": round(cpu / call["seconds"], 5),
                "main_thread_cpu_s": cost["cpu_s"],  # as the report noted it
                "stats_reads": cost["stats_reads"],
            }
        )
    per_call = {on: [c["worker_cpu_s"] / c["seconds"] for c in runs[on]] for on in runs}
    return {
        "accounted_cores_per_call": round(statistics.mean(a["cores"] for a in accounted), 5),
        "accounted": accounted,
        "stats_read_cpu_ms": round(
            1000 * statistics.mean(c["stats_read_cpu_s"] for c in runs["1"]), 3
        ),
        "worker_cores_per_call_with": round(statistics.mean(per_call["1"]), 4),
        "worker_cores_per_call_without": round(statistics.mean(per_call["0"]), 4),
        "difference_cores": round(
            statistics.mean(per_call["1"]) - statistics.mean(per_call["0"]), 4
        ),
        "runs": runs,
        "conditions": {
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "machine": platform.machine(),
            "calls": calls,
            "turns": turns,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3, help="calls per configuration")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.turns))
    text = json.dumps(result, indent=1)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report_cost.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
