"""`./scripts/cluster.sh` as a person runs it, in a real terminal (tmux): the cluster comes up
with one command, a call through the second node is answered, and Ctrl+C stops every process
(Redis, both nodes, the redispatcher, the workers, the page)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.test_up import screen, stack_processes, tmux
from tools import stack
from tools.caller import Caller

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def cluster_processes(marker: str, base: int) -> list[int]:
    """What the script started: its environment marks them all, except redis-server, which
    overwrites its environment with its title ("redis-server 127.0.0.1:PORT")."""
    redis = f"redis-server 127.0.0.1:{base}".encode()
    found = stack_processes(marker)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(redis):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by scripts/setup.sh")
def test_cluster_comes_up_answers_through_either_node_and_stops_on_ctrl_c():
    # the script's block (Redis, nodes, redispatcher, page, workers), bound after setup.sh runs
    base = stack.free_port_block(33, below_ephemeral=True)
    agent_name = f"cluster-{uuid.uuid4().hex[:6]}"  # also marks every process the script starts
    env = {
        "CLUSTER_PORT": str(base),
        "AGENT_NAME": agent_name,
        "LIVEKIT_API_KEY": stack.API_KEY,
        "LIVEKIT_API_SECRET": stack.API_SECRET,
    }
    command = " ".join(f"{k}={v}" for k, v in env.items()) + " bash scripts/cluster.sh"
    session = f"cluster-{agent_name}"
    # typed into a shell, as a person would: the screen stays readable whatever the script does
    tmux("new-session", "-d", "-s", session, "-x", "220", "-y", "60", "-c", str(ROOT), "bash")
    tmux("send-keys", "-t", session, command, "Enter")
    try:
        deadline = time.time() + 300  # setup.sh runs first: quick when everything is installed
        while "The cluster is up" not in (text := screen(session)):
            assert time.time() < deadline, f"the cluster never came up:\n{text}"
            assert "error: " not in text, text  # the script stopped with its one-line reason
            time.sleep(0.5)
        logs = ROOT / ".run" / "cluster"
        for n in (1, 2):  # each worker registered with its own node
            assert "registered worker" in (logs / f"worker{n}.log").read_text()
            assert "worker registered" in (logs / f"node{n}.log").read_text()

        async def call(url: str):
            async with Caller(url, stack.API_KEY, stack.API_SECRET, agent_name) as c:
                await c.wait_for_greeting()
                return await c.say("What a lovely day it is.")

        turn = asyncio.run(call(f"ws://127.0.0.1:{base + 20}"))  # node 2
        # the agent heard the caller and answered with what it heard (the echo LLM); how well
        # it heard is test_e2e_call's business
        assert turn.user_final is not None, "no transcript of the caller"
        assert any(t.startswith("You said: ") for t in turn.agent_texts), turn.agent_texts

        # Redis, 2 nodes, the redispatcher, 2 workers, the page (and the script itself)
        assert len(cluster_processes(agent_name, base)) >= 7, "could not see the cluster"
        started = time.time()
        tmux("send-keys", "-t", session, "C-c")
        while (left := cluster_processes(agent_name, base)) and time.time() - started < 15:
            time.sleep(0.1)
        print(f"cluster.sh stopped everything in {time.time() - started:.1f} s after Ctrl+C")
        assert not left, f"still running after Ctrl+C: {left}\n{screen(session)}"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        for pid in cluster_processes(agent_name, base):
            os.kill(pid, 9)
