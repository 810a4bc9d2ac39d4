"""`python -m agent dev` on a copy of the agent, edited while it runs: the next call runs the saved
code, a broken save leaves the last good worker answering, and a call held across a reload loses
no turn (it finishes on the code it started with, then its worker exits)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent.plugins.echo import PHRASES
from tools import stack
from tools.caller import Caller
from tools.wer import wer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
GREETING = PHRASES["en"].greeting
RELOADED = "dev: new worker registered"
TIMEOUT = 180  # s for a new worker: it loads its models, on a machine the other tests share


class Dev:
    """`python -m agent dev` in a copy of the project (agent/, and .tools for its models)."""

    def __init__(self, server: stack.Server, root: Path) -> None:
        self.root = root
        shutil.copytree(
            ROOT / "agent", root / "agent", ignore=shutil.ignore_patterns("__pycache__")
        )
        (root / ".tools").symlink_to(ROOT / ".tools")
        self.agent_name = f"dev-{uuid.uuid4().hex[:6]}"
        self.greeting = GREETING  # what the agent says first, as the tests edit it
        self.url = server.url
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "STT", "LLM"))}
        env.update(
            LIVEKIT_URL=server.url,
            LIVEKIT_API_KEY=stack.API_KEY,
            LIVEKIT_API_SECRET=stack.API_SECRET,
            AGENT_NAME=self.agent_name,
            AGENT_HTTP_PORT=str(stack.free_port()),
            CPU_PRESSURE_LIMIT="0",  # see stack.start_worker
        )
        stack.ARTIFACTS.mkdir(exist_ok=True)
        self.log = stack.ARTIFACTS / f"dev-{self.agent_name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "dev"],
            cwd=root,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        stack.wait_for(lambda: "dev: watching" in self.output(), TIMEOUT, "dev", self.log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.root / path
        text = file.read_text()
        assert old in text, f"{old!r} is not in {path}"
        file.write_text(text.replace(old, new))

    def wait_for_line(self, pattern: str, after: int) -> str:
        """The first line matching `pattern` in the output past offset `after`."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = re.findall(f".*{pattern}.*", self.output()[after:])
            return bool(found)

        stack.wait_for(seen, TIMEOUT, pattern, self.log)
        return found[0]

    def call(self) -> Caller:
        return Caller(self.url, stack.API_KEY, stack.API_SECRET, self.agent_name)

    def stop(self) -> None:
        self.process.send_signal(2)  # Ctrl+C
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def dev(livekit_server, tmp_path_factory):
    d = Dev(livekit_server, tmp_path_factory.mktemp("project"))
    yield d
    d.stop()


def reload_and_time(dev: Dev, path: str, old: str, new: str) -> float:
    """Save the edit; seconds from the save to the new worker's registration."""
    mark = len(dev.output())
    saved = time.time()
    dev.edit(path, old, new)
    dev.wait_for_line(RELOADED, mark)
    took = time.time() - saved
    print(f"save -> new worker registered: {took:.1f} s")
    return took


async def greeting(dev: Dev) -> str:
    async with dev.call() as caller:
        await caller.wait_for_greeting()
        return " ".join(t.text for t in caller.agent_finals())


def test_a_save_reaches_the_next_call(dev):
    new = dev.greeting.replace("development agent", "freshly saved agent")  # new on a rerun too
    reload_and_time(dev, "agent/plugins/echo.py", dev.greeting, new)
    dev.greeting = new
    heard = asyncio.run(greeting(dev))
    assert wer(new, heard) <= 0.2, heard


def test_a_broken_save_keeps_the_last_good_worker(dev):
    mark = len(dev.output())
    worker = dev.root / "agent/worker.py"
    good = worker.read_text()
    try:
        worker.write_text(good + "\ndef broken(:\n")
        line = dev.wait_for_line("dev: not reloading", mark)
        assert "agent/worker.py" in line and "invalid syntax" in line, line
        # the last good worker answers, with call processes forked after the save: they hold
        # the code the worker started with (agent/preload.py), not the file on disk
        heard = asyncio.run(greeting(dev))
        assert wer(dev.greeting, heard) <= 0.2, heard
        dev.wait_for_line("process initialized", mark)
        assert "SyntaxError" not in dev.output()[mark:]

        # a bad setting: the new worker exits before registering, in one line
        mark = len(dev.output())
        (dev.root / ".env").write_text("MAX_CALLS=lots\n")
        line = dev.wait_for_line("dev: the new worker did not start", mark)
        assert "MAX_CALLS" in line, line
        heard = asyncio.run(greeting(dev))
        assert wer(dev.greeting, heard) <= 0.2, heard
        # and the call processes forked since hold the settings the worker started with
        dev.wait_for_line("process initialized", mark)
        assert "Traceback" not in dev.output()[mark:]
        assert "error initializing process" not in dev.output()[mark:]
    finally:
        worker.write_text(good)
        (dev.root / ".env").unlink(missing_ok=True)
    dev.wait_for_line(RELOADED, mark)


def test_a_call_held_across_a_reload_loses_no_turn(dev):
    said = "Please book a table for two at seven."
    you_said = PHRASES["en"].you_said

    async def held_call() -> list[list[str]]:
        replies = []
        async with dev.call() as caller:
            await caller.wait_for_greeting()
            replies.append((await caller.say(said)).agent_texts)
            edit = ("agent/plugins/echo.py", you_said, "Reloaded, " + you_said)
            await asyncio.to_thread(reload_and_time, dev, *edit)
            replies.append((await caller.say(said)).agent_texts)
            mark = len(dev.output())
        # the old worker had drained: with its last call over, it exits
        dev.wait_for_line("shutting down worker", mark)
        async with dev.call() as caller:
            await caller.wait_for_greeting()
            replies.append((await caller.say(said)).agent_texts)
        return replies

    before, during, after = asyncio.run(held_call())
    assert any(wer(you_said.format(said), r) <= 0.3 for r in before), before
    # the call in progress finishes on the code it started with
    assert any(wer(you_said.format(said), r) <= 0.3 for r in during), during
    assert any(wer("Reloaded, " + you_said.format(said), r) <= 0.3 for r in after), after


def test_the_worker_runs_from_agent_alone():
    # `dev` watches agent/ (and .env): the worker, its plugins and its call processes' preload
    # must import nothing else of the project, or a save there would not reach it
    code = (
        "import sys\n"
        "import agent.__main__, agent.worker\n"
        "from agent import config\n"
        "config.import_plugins(config.resolve(config.Settings.from_env(environ={})))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    loaded = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, text=True)
    assert "agent" in loaded
    assert not [p for p in packages - {"agent"} if f"'{p}'" in loaded], loaded
