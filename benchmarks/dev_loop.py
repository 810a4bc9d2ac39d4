"""How long the dev loop makes a developer wait, and where that time goes.

    uv run python -m benchmarks.dev_loop [--runs 3] [--out benchmarks/results]

- warm_up: a warm `scripts/up.sh` (everything installed and built) on free ports, from its start
  to its setup done, the page answering and the worker registered (ready: both), then its stop
  after SIGTERM.
- reload: `python -m agent dev` on a copy of the agent, with JOB_EXECUTOR=process (the default)
  then thread; each run saves a change once the spare is ready and times it to the
  supervisor's "new worker registered" line, with the CPU seconds the dev processes used.
- worker_start: one `python -m agent start`, its log lines dated as they arrive: the main
  process importing and checking its settings (to LiveKit's "starting worker"), then its call
  processes' forkserver importing and loading the models (to "registered worker"), and the CPU
  seconds its processes used by then (what a reload costs on an idle machine). Ready as
  agent/reload.py counts it: registered, with a warm call process.

Every figure comes with the load average: the machine is shared, and a start is mostly CPU.
Prints JSON and writes dev_loop.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil

from tools import stack

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"warm_up_ready_s": 5.0, "reload_s": 3.0}


class Lines:
    """A process's output lines, each dated on arrival (monotonic seconds since `started`)."""

    def __init__(self, process: subprocess.Popen, started: float) -> None:
        self.lines: list[tuple[float, str]] = []
        self.started = started
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append((time.monotonic() - self.started, line.decode(errors="replace")))

    def first(self, text: str, after: float = 0.0) -> float | None:
        return next((t for t, line in self.lines if text in line and t >= after), None)


def wait(check, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()) is not None:
            return value
        time.sleep(0.05)
    raise TimeoutError("not ready")


def page_answers(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200
    except OSError:
        return False


def warm_up() -> dict:
    port = stack.free_port_block()
    web_port = stack.free_port()
    env = {
        **os.environ,
        "LIVEKIT_PORT": str(port),
        "LIVEKIT_URL": f"ws://127.0.0.1:{port}",
        "LIVEKIT_API_KEY": stack.API_KEY,
        "LIVEKIT_API_SECRET": stack.API_SECRET,
        "WEB_PORT": str(web_port),
        "GATEWAY_PORT": str(stack.free_port()),
        "AGENT_HTTP_PORT": str(stack.free_port()),
        "AGENT_NAME": f"bench-{uuid.uuid4().hex[:6]}",
    }
    load = os.getloadavg()[0]
    started = time.monotonic()
    up = subprocess.Popen(
        ["bash", "scripts/up.sh"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = Lines(up, started)
    try:
        page = wait(lambda: time.monotonic() - started if page_answers(web_port) else None)
        registered = wait(lambda: out.first("registered worker"))
        row = {
            "load_average": round(load, 1),
            "setup_done_s": out.first("setup done"),
            "page_answers_s": page,
            "worker_registered_s": registered,
            "ready_s": max(page, registered),
        }
    finally:
        stopping = time.monotonic()
        up.send_signal(signal.SIGTERM)
        up.wait(30)
    row["stopped_s"] = time.monotonic() - stopping
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


def copy_project(into: Path) -> None:
    shutil.copytree(ROOT / "agent", into / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    (into / ".tools").symlink_to(ROOT / ".tools")


def worker_env(server: stack.Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "STT", "LLM"))}
    env.update(
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=stack.API_KEY,
        LIVEKIT_API_SECRET=stack.API_SECRET,
        AGENT_NAME=f"bench-{uuid.uuid4().hex[:6]}",
        AGENT_HTTP_PORT=str(stack.free_port()),
    )
    return env


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each of `pid`'s living descendants."""
    cpu = {}
    for p in psutil.Process(pid).children(recursive=True):
        try:
            cpu[p.pid] = sum(p.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return cpu


def cpu_since(pid: int, before: dict[int, float]) -> float:
    """CPU seconds `pid`'s living descendants used since `before` (the new ones: all of it)."""
    return sum(cpu - before.get(p, 0.0) for p, cpu in tree_cpu(pid).items())


def wait_idle(pid: int, timeout: float = 180.0) -> None:
    """Until `pid`'s descendants use under 0.2 s of CPU in 2 s, as between a developer's saves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = tree_cpu(pid)
        time.sleep(2)
        if cpu_since(pid, before) < 0.2:
            return


def launch(
    server: stack.Server, command: str, executor: str, cwd: Path
) -> tuple[subprocess.Popen, Lines]:
    """`python -m agent <command>` in `cwd` against `server`, and its output as it comes."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", command],
        cwd=cwd,
        env={**worker_env(server), "JOB_EXECUTOR": executor},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return process, Lines(process, started)


def reloads(server: stack.Server, runs: int, executor: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        copy_project(Path(tmp))
        dev, out = launch(server, "dev", executor, Path(tmp))
        try:
            wait(lambda: out.first("dev: watching"))
            echo = Path(tmp) / "agent/plugins/echo.py"
            for n in range(runs):
                wait_idle(dev.pid)  # the old worker has exited, the spare has imported LiveKit
                load = os.getloadavg()[0]
                cpu = tree_cpu(dev.pid)
                saved = time.monotonic() - out.started
                echo.write_text(echo.read_text().replace("You said", f"Run {n}, you said", 1))
                registered = wait(lambda s=saved: out.first("dev: new worker registered", s))
                rows.append(
                    {
                        "job_executor": executor,
                        "load_average": round(load, 1),
                        "reload_s": round(registered - saved, 2),
                        # the new worker's processes (the spare's go on), the old one's idling
                        "cpu_s": round(cpu_since(dev.pid, cpu), 2),
                    }
                )
        finally:
            dev.send_signal(signal.SIGINT)
            dev.wait(30)
    return rows


def worker_start(server: stack.Server, executor: str) -> dict:
    load = os.getloadavg()[0]
    worker, out = launch(server, "start", executor, ROOT)
    try:
        registered = wait(lambda: out.first("registered worker"))
        if out.first("timed out waiting for idle processes") is not None:  # a busy machine
            registered = wait(lambda: out.first("process initialized", registered))
        tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
        cpu = {p.pid: sum(p.cpu_times()[:2]) for p in tree}
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    imported = out.first("starting worker")
    return {
        "load_average": round(load, 1),
        "job_executor": executor,
        # imports (livekit.agents: most of it) and settings, to LiveKit's "starting worker"
        "imports_and_settings_s": round(imported, 2),
        # process: the forkserver (imports again, models), then the idle call processes;
        # thread: the models, loaded in the worker's own process
        "call_runners_s": round(registered - imported, 2),
        "registered_s": round(registered, 2),
        "cpu_s_worker_process": round(cpu[worker.pid], 2),
        "cpu_s_other_processes": round(sum(cpu.values()) - cpu[worker.pid], 2),
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for i, row in enumerate(summary["warm_up"]):
        a.barh(i, row["setup_done_s"], color="tab:gray", label="setup.sh" if i == 0 else None)
        a.barh(
            i,
            row["ready_s"] - row["setup_done_s"],
            left=row["setup_done_s"],
            color="tab:blue",
            label="services up (page + worker registered)" if i == 0 else None,
        )
        a.text(
            row["ready_s"], i, f" {row['ready_s']:.1f} s (load {row['load_average']})", va="center"
        )
    a.axvline(TARGETS["warm_up_ready_s"], color="tab:red", ls="--", label="target")
    a.set(title="warm scripts/up.sh", xlabel="seconds", yticks=[])
    a.set_xlim(0, max(r["ready_s"] for r in summary["warm_up"]) * 1.6)
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, ncol=2)
    w = summary["worker_start"][0]  # JOB_EXECUTOR=process, the default
    b.barh(0, w["imports_and_settings_s"], color="tab:orange", label="a start: imports, settings")
    b.barh(
        0,
        w["call_runners_s"],
        left=w["imports_and_settings_s"],
        color="tab:green",
        label="then the forkserver: imports, models, call processes",
    )
    cpu = w["cpu_s_worker_process"] + w["cpu_s_other_processes"]
    b.text(
        w["registered_s"],
        0,
        f" a cold start: {w['registered_s']:.1f} s, {cpu:.1f} CPU s",
        va="center",
    )
    for i, row in enumerate(summary["reload"], start=1):
        b.barh(
            i,
            row["reload_s"],
            color="tab:blue",
            label="save -> new worker registered" if i == 1 else None,
        )
        b.text(
            row["reload_s"],
            i,
            f" {row['reload_s']:.1f} s, {row['cpu_s']:.1f} CPU s, {row['job_executor']} jobs"
            f" (load {row['load_average']})",
            va="center",
        )
    b.axvline(TARGETS["reload_s"], color="tab:red", ls="--", label="target")
    b.set(title="python -m agent dev: a save", xlabel="seconds", yticks=[])
    b.set_xlim(0, max(w["registered_s"], *(r["reload_s"] for r in summary["reload"])) * 1.6)
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, check=True, capture_output=True)  # warm
    summary = {
        "cpus": os.cpu_count(),
        "targets": TARGETS,
        "warm_up": [warm_up() for _ in range(args.runs)],
    }
    print(json.dumps(summary["warm_up"], indent=2), flush=True)
    server = stack.start_server("livekit-server-dev-loop")
    try:
        summary["worker_start"] = [worker_start(server, e) for e in ("process", "thread")]
        print(json.dumps(summary["worker_start"], indent=2), flush=True)
        summary["reload"] = [
            *reloads(server, args.runs, "process"),
            *reloads(server, args.runs, "thread"),
        ]
        print(json.dumps(summary["reload"], indent=2), flush=True)
    finally:
        stack.stop(server.process)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dev_loop.json").write_text(json.dumps(summary, indent=2))
    plot(summary, args.out / "dev_loop.png")


if __name__ == "__main__":
    main()
