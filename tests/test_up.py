"""`./scripts/up.sh` as a person runs it, in a real terminal (tmux): readable log lines, a call
answered, a call on Cartesia Ink Whisper answered offline through the gateway up.sh starts, and
Ctrl+C right after the calls stops every process of the stack, as do two TERMs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tools import stack
from tools.caller import Caller
from tools.wer import wer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-J", "-S", "-500", "-t", session)


def stack_processes(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (everything up.sh started inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def left_after(agent_name: str, seconds: float) -> list[int]:
    """The stack's processes still running `seconds` after it was told to stop (fewer sooner)."""
    deadline = time.time() + seconds
    while (left := stack_processes(agent_name)) and time.time() < deadline:
        time.sleep(0.1)
    return left


def assert_stopped(agent_name: str, log: Path, seconds: float, after: str) -> None:
    """Every process of the stack gone within `seconds`, and up.sh's last word "stopped"."""
    left = left_after(agent_name, seconds)
    assert not left, f"still running after {after}: {left}\n{log.read_text()[-1500:]}"
    assert log.read_text().rstrip().endswith("stopped")


def kill_leftovers(agent_name: str) -> None:
    for pid in stack_processes(agent_name):
        os.kill(pid, 9)


def up_run(kind: str) -> tuple[dict[str, str], str, Path]:
    """A new up.sh stack's settings (up_env), its agent's name and the log its run writes."""
    env = up_env()
    stack.ARTIFACTS.mkdir(exist_ok=True)
    return env, env["AGENT_NAME"], stack.ARTIFACTS / f"up-{kind}-{env['AGENT_NAME']}.log"


def up_env(**more: str) -> dict[str, str]:
    """The settings of an up.sh stack on free ports, its agent named uniquely (the marker
    `stack_processes` finds its processes by)."""
    port = stack.free_port_block()
    return {
        "LIVEKIT_PORT": str(port),  # up.sh points the agent and the page at it
        "LIVEKIT_API_KEY": stack.API_KEY,
        "LIVEKIT_API_SECRET": stack.API_SECRET,
        "WEB_PORT": str(stack.free_port()),
        "GATEWAY_PORT": str(stack.free_port()),
        "AGENT_HTTP_PORT": str(stack.free_port()),
        "AGENT_NAME": f"up-{uuid.uuid4().hex[:6]}",
        **more,
    }


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by scripts/setup.sh")
def test_up_logs_readably_answers_and_stops_on_ctrl_c():
    env = up_env(MAX_CALLS="4")
    agent_name = env["AGENT_NAME"]
    command = " ".join(f"{k}={v}" for k, v in env.items()) + " bash scripts/up.sh"
    session = f"up-{agent_name}"
    tmux("new-session", "-d", "-s", session, "-x", "220", "-y", "60", "-c", str(ROOT), command)
    try:
        deadline = time.time() + 300  # setup.sh runs first: quick when everything is installed
        while "registered worker" not in (text := screen(session)):
            assert time.time() < deadline, f"the worker never registered:\n{text}"
            time.sleep(0.5)

        async def call(**attributes: str) -> list[str]:
            async with Caller(
                f"ws://127.0.0.1:{env['LIVEKIT_PORT']}",
                stack.API_KEY,
                stack.API_SECRET,
                agent_name,
                attributes=attributes,
            ) as c:
                await c.wait_for_greeting()
                return (await c.say("Please book a table for two at seven.")).agent_texts

        def answered(replies: list[str]) -> bool:
            return any(
                wer("You said: Please book a table for two at seven.", r) <= 0.3 for r in replies
            )

        replies = asyncio.run(call())
        assert answered(replies), replies
        # the page's cloud choice, offline: the caller picks Ink Whisper as the page does
        replies = asyncio.run(call(stt="cartesia/ink-whisper", language="en"))
        assert answered(replies), replies
        gateway = urllib.request.Request(
            f"http://127.0.0.1:{env['GATEWAY_PORT']}/sessions",
            headers={"X-API-Key": "local-dev-key"},  # the gateway's default Cartesia key
        )
        sessions = json.loads(urllib.request.urlopen(gateway, timeout=5).read())
        heard = [s for s in sessions if s["model"] == "cartesia/ink-whisper" and s["finals"]]
        assert heard and heard[0]["route"] == "inference", sessions
        text = screen(session)
        assert "received job request" in text
        events = [line for line in text.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]
        assert len(events) >= 3, text
        assert not [line for line in text.splitlines() if line.lstrip().startswith('{"')], text

        assert stack_processes(agent_name), "could not see the stack's processes"
        started = time.time()
        tmux("send-keys", "-t", session, "C-c")
        left = left_after(agent_name, 10)
        print(f"up.sh stopped everything in {time.time() - started:.1f} s after Ctrl+C")
        assert not left, f"still running after Ctrl+C: {left}\n{screen(session)}"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        kill_leftovers(agent_name)


def test_up_stops_everything_when_terminated_twice():
    # `timeout 300 ./scripts/up.sh`, then `pkill -f scripts/up.sh`: the script gets a TERM from
    # pkill and another from `timeout` passing it on, the second while it stops the stack. (A
    # race: when up.sh reset its traps to the default, this caught it in 1 of 2 runs.)
    env, agent_name, log = up_run("terminated")
    script = subprocess.Popen(
        ["timeout", "300", "bash", "scripts/up.sh"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        stack.wait_for(lambda: "registered worker" in log.read_text(), 300, "up.sh", log)
        bash = [int(p) for p in subprocess.check_output(["pgrep", "-P", str(script.pid)]).split()]
        for pid in (*bash, script.pid):
            os.kill(pid, 15)
        assert_stopped(agent_name, log, 10, "two TERMs")
    finally:
        script.kill()
        kill_leftovers(agent_name)


def test_a_warm_setup_runs_no_step_and_a_changed_input_reruns_its_own(tmp_path):
    # up.sh runs setup.sh on every start: warm, it must only check (CI has just run it)
    warm = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True)
    assert warm.returncode == 0, warm.stderr
    steps = [line for line in warm.stdout.splitlines() if "==>" in line]
    assert len(steps) == 1 and "setup done" in steps[0], warm.stdout
    # the stamps (scripts/common.sh): a step is out of date once any of its inputs changed
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.js").write_text("one")
    check = 'source scripts/common.sh; cd "$0"; changed stamp src && echo changed || echo same'
    stamp = 'source scripts/common.sh; cd "$0"; stamp stamp src'

    def state() -> str:
        return subprocess.check_output(["bash", "-c", check, tmp_path], cwd=ROOT, text=True)

    assert state().strip() == "changed"  # never run
    subprocess.run(["bash", "-c", stamp, tmp_path], cwd=ROOT, check=True)
    assert state().strip() == "same"
    (tmp_path / "src" / "main.js").write_text("two")
    assert state().strip() == "changed"
