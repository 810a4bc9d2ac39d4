"""`python -m agent dev`: the worker, started again with the new code whenever it is saved.

LiveKit's Python CLI no longer reloads in-process (it points at `lk agent dev`, a Go CLI that
air-gapped machines may not have), so `dev` is this supervisor. It runs none of the
worker itself: it starts `python -m agent start <the same flags>` as a child in its own group
and watches what the worker runs from: the `agent/` package (every *.py, the catalog
included: the worker imports nothing else of the project, tests/test_dev_reload.py checks it)
and `./.env`. On a change:

1. a saved file that does not compile is told in one line, and nothing else happens;
2. a new worker starts with the new code and settings (on a free health port, as the old one
   still holds its own), while the old one keeps answering. It is the spare when there is one:
   an interpreter that imported LiveKit while nothing was changing;
3. once the new worker logs LiveKit's "registered worker" (its idle call processes are warm by
   then), the old one gets SIGTERM: LiveKit's `start` then drains it, telling the server it is
   full (so every new call goes to the new worker) and exiting when its last call ends;
4. a new worker that exits before registering (an import error, a bad setting) costs one line,
   and the old one keeps serving. A newer save replaces a worker still starting.

Ctrl+C (or SIGTERM) stops every worker: SIGTERM, then SIGKILL of its group after STOP_GRACE.
See docs/dev-loop.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import sys
import time
from pathlib import Path

import watchfiles

PACKAGE = Path(__file__).resolve().parent  # agent/: what the worker runs
# LiveKit's log lines: the server accepted the worker, which waited for its idle call processes
# to warm up first, unless that took more than LiveKit's ~12 s (a busy machine): then the first
# idle process to be ready
READY = b"registered worker"
COLD = b"timed out waiting for idle processes"
WARM = re.compile(rb"process initialized|job runner initialized")
REGISTER_TIMEOUT = 180  # s: a worker loading its models on a busy machine
# Ctrl+C: how long the workers get to close before their groups are killed. scripts/up.sh
# kills this process's group 2 s after its SIGTERM, and the workers are in groups of their own.
STOP_GRACE = 1.5
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
FRAME = re.compile(r'File "([^"]+)", line (\d+)')  # a traceback's frame
# A spare worker, started once the last one is up: an interpreter with LiveKit already imported
# (1.5-3.5 s of CPU, most of what a worker's own process spends before it runs), waiting for a
# line on its stdin to run `python -m agent` with whatever code and settings are saved by then.
STANDBY = """
import runpy, sys
import livekit.agents.cli
if sys.stdin.readline():  # the supervisor's go; nothing (EOF) when it is gone
    runpy.run_module("agent", run_name="__main__", alter_sys=True)
"""
PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_supervisor() -> None:
    """In the worker, before it runs: SIGKILL when the supervisor dies, however it dies (kill -9,
    or scripts/up.sh's SIGKILL of the supervisor's group, which the workers are not in)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def say(message: str) -> None:
    print(f"dev: {message}", file=sys.stderr, flush=True)


def one_line_error(output: bytes) -> str:
    """The line that says why a worker did not start: our own `error: ...` (a bad setting),
    else a traceback's last line with the place of its last frame (a syntax error)."""
    lines = [line.strip() for line in ANSI.sub(b"", output).decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "it exited without a word"
    ours = [line for line in lines if line.startswith("error: ")]
    if ours:
        return ours[-1].removeprefix("error: ")
    frames = [m for line in lines if (m := FRAME.search(line))]
    if frames:
        path, number = frames[-1].groups()
        if Path(path).is_relative_to(Path.cwd()):
            path = str(Path(path).relative_to(Path.cwd()))
        return f"{path}:{number}: {lines[-1]}"
    return lines[-1]


class Worker:
    """`python -m agent start ARGS` in its own process group. Its output is held back until
    it registers (then passed through), so a worker that fails to start costs one line."""

    def __init__(
        self, args: list[str], env: dict[str, str], show_startup: bool, standby: bool
    ) -> None:
        head = ["-c", STANDBY] if standby else ["-m", "agent"]
        self.command = [sys.executable, *head, "start", *args]
        self.standby = standby
        self.env = env
        self.held: bytearray | None = None if show_startup else bytearray()
        self.registered = asyncio.Event()  # and ready to answer a call at once
        self.seen_ready = self.cold = False
        self.started = time.monotonic()

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.PIPE if self.standby else None,
            # its own group: the terminal's Ctrl+C reaches only the supervisor, which drains or
            # stops the worker, and a SIGKILL of the group ends its call processes with it
            start_new_session=True,
            preexec_fn=_die_with_supervisor if _prctl else None,
            limit=1 << 20,  # a log line can be long (a traceback in JSON)
        )
        self.pump = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        out = sys.stdout.buffer
        async for line in self.process.stdout:
            if self.held is None:
                out.write(line)
                out.flush()
            else:
                self.held += line
            self.cold = self.cold or COLD in line
            self.seen_ready = self.seen_ready or READY in line
            if self.cold and WARM.search(line):
                self.cold = False
            if not self.registered.is_set() and self.seen_ready and not self.cold:
                self.registered.set()
                if self.held:
                    out.write(self.held)
                    out.flush()
                self.held = None
        await self.process.wait()

    def go(self) -> bool:
        """A standby runs the worker now; False if it is gone."""
        if self.process.returncode is not None:
            return False
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()
        self.standby = False
        return True

    async def wait_registered(self) -> bool:
        """True once registered; False when it exited (or hung) before that."""
        registered = asyncio.create_task(self.registered.wait())
        await asyncio.wait(
            {registered, self.pump}, timeout=REGISTER_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        registered.cancel()
        return self.registered.is_set() and self.process.returncode is None

    def error(self) -> str:
        if not self.pump.done():
            return f"it did not register within {REGISTER_TIMEOUT} s"
        return one_line_error(bytes(self.held or b""))

    def signal(self, sig: int, group: bool = False) -> None:
        try:
            if group:
                os.killpg(self.process.pid, sig)
            else:
                os.kill(self.process.pid, sig)
        except ProcessLookupError:
            pass

    async def stop(self) -> None:
        """SIGTERM (LiveKit closes its call processes), then SIGKILL for whatever is left."""
        self.signal(signal.SIGTERM)
        await asyncio.wait({self.pump}, timeout=STOP_GRACE)
        self.signal(signal.SIGKILL, group=True)
        await self.pump


class Supervisor:
    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.serving: Worker | None = None
        self.workers: set[Worker] = set()  # every one alive: serving, starting, draining, spare
        self.spare: Worker | None = None
        # the old worker still holds the configured ports while it drains: a new one takes any
        # free health port, and serves no metrics (PROMETHEUS_PORT is one fixed port to scrape;
        # the first worker of `dev` has it, `start` always does)
        self.next_env = {**os.environ, "AGENT_HTTP_PORT": "0", "PROMETHEUS_PORT": "0"}

    async def spawn(self, env: dict[str, str], show_startup: bool, standby: bool = False) -> Worker:
        worker = Worker(self.args, env, show_startup, standby)
        self.workers.add(worker)
        await worker.start()
        worker.pump.add_done_callback(lambda _: self.exited(worker))
        return worker

    def exited(self, worker: Worker) -> None:
        self.workers.discard(worker)
        worker.signal(signal.SIGKILL, group=True)  # a call process it left behind
        if worker is self.serving:
            self.serving = None
            code = worker.process.returncode
            say(f"the worker stopped (exit status {code}); save a change to start a new one")

    async def reload(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({os.path.relpath(p) for _, p in changes})
        try:  # a syntax error is told at once, without starting a worker
            for name in names:
                if name.endswith(".py") and Path(name).exists():
                    compile(Path(name).read_bytes(), name, "exec")
        except SyntaxError as e:
            say(f"not reloading, the worker keeps serving: {e.filename}:{e.lineno}: {e.msg}")
            return
        saved = time.monotonic()
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        say(f"{shown} changed: starting a new worker")
        worker, self.spare = self.spare, None
        if worker is None or not worker.go():
            worker = await self.spawn(self.next_env, show_startup=False)
        try:
            ok = await worker.wait_registered()
        except asyncio.CancelledError:  # a newer save: that worker is already out of date
            await worker.stop()
            raise
        # a spare for the next save, now that the CPU is free
        self.spare = await self.spawn(self.next_env, show_startup=False, standby=True)
        if not ok:
            say(f"the new worker did not start, the previous one keeps serving: {worker.error()}")
            await worker.stop()
            return
        old, self.serving = self.serving, worker
        took = time.monotonic() - saved
        if old is None:
            say(f"new worker registered in {took:.1f} s")
            return
        old.signal(signal.SIGTERM)  # LiveKit drains it: no new calls, exits after its last
        say(
            f"new worker registered in {took:.1f} s and takes every new call; the previous one "
            "finishes its calls in progress, then exits"
        )

    async def run(self) -> int:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stopping.set)
        stop = asyncio.create_task(stopping.wait())
        try:
            first = await self.spawn(dict(os.environ), show_startup=True)
            ready = asyncio.create_task(first.wait_registered())
            await asyncio.wait({ready, stop}, return_when="FIRST_COMPLETED")
            if stopping.is_set():
                return 130
            if not ready.result():  # its own output said why (a bad setting, a syntax error)
                if first.process.returncode is None:
                    say(first.error())
                    return 1
                return first.process.returncode
            self.serving = first
            self.spare = await self.spawn(self.next_env, show_startup=False, standby=True)
            await self.watch(stop)
            return 0
        finally:
            self.serving = None  # stopping it now is no news
            await asyncio.gather(*(w.stop() for w in list(self.workers)))

    async def watch(self, stop: asyncio.Task) -> None:
        """Reload on every change until `stop` is done."""
        changes: asyncio.Queue[set[tuple[watchfiles.Change, str]]] = asyncio.Queue()
        watchers = [
            asyncio.create_task(watch(changes, PACKAGE, watch_filter=watchfiles.PythonFilter())),
            # .env on its own: the project root holds far more than the worker's files
            asyncio.create_task(watch(changes, Path.cwd(), recursive=False, watch_filter=is_env)),
        ]
        await asyncio.sleep(0)  # each watcher's first step sets up its inotify watches
        say(f"watching {PACKAGE.name}/ and .env: a save starts a new worker; Ctrl+C stops")
        reloading: asyncio.Task | None = None
        while True:
            change = asyncio.create_task(changes.get())
            await asyncio.wait({change, stop}, return_when="FIRST_COMPLETED")
            if stop.done():
                change.cancel()
                break
            if reloading:
                reloading.cancel()  # a worker still starting is out of date already
            reloading = asyncio.create_task(self.reload(change.result()))
        tasks = [*watchers, *([reloading] if reloading else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def is_env(_: watchfiles.Change, path: str) -> bool:
    return Path(path).name == ".env"


async def watch(queue: asyncio.Queue, path: Path, **options) -> None:
    # a burst of saves (an editor's, a `git checkout`) arrives as one set: watchfiles groups
    # changes until 50 ms pass without one
    async for changes in watchfiles.awatch(path, **options):
        await queue.put(changes)


def main(args: list[str]) -> int:
    """`dev [flags]`: the flags are `start`'s (ours and LiveKit's); `--no-reload` runs a plain
    `start`."""
    if "--no-reload" in args:
        from .__main__ import run_worker

        run_worker(["start", *(a for a in args if a != "--no-reload")])
        return 0
    args = [a for a in args if a != "--reload"]
    return asyncio.run(Supervisor(args).run())
