"""`kill -INT` stops scripts/up.sh even when a script started it in the background, where bash
ignores SIGINT (issue 33): every process of the stack is gone and the script says so."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.test_up import left_after, stack_processes, up_env
from tools import stack
from tools.stack import ROOT

pytestmark = pytest.mark.e2e


def test_kill_int_stops_up_sh_started_in_the_background_by_a_script():
    env = up_env()
    agent_name = env["AGENT_NAME"]
    stack.ARTIFACTS.mkdir(exist_ok=True)
    log = stack.ARTIFACTS / f"up-sigint-{agent_name}.log"
    # as `./scripts/up.sh &` in a script: a non-interactive bash starts it with SIGINT ignored
    launcher = subprocess.Popen(
        ["bash", "-c", f"bash scripts/up.sh >'{log}' 2>&1 & echo $!; wait"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    up = int(launcher.stdout.readline())
    try:
        # the gateway and the page are up, the worker is starting: services of every kind
        stack.wait_for(
            lambda: log.exists() and "starting the agent worker" in log.read_text(),
            300,
            "up.sh",
            log,
        )
        assert stack_processes(agent_name), "could not see the stack's processes"
        os.kill(up, signal.SIGINT)
        launcher.wait(30)  # up.sh exited
        left = left_after(agent_name, 15)
        assert not left, f"still running after kill -INT: {left}\n{log.read_text()[-1500:]}"
        assert log.read_text().rstrip().endswith("stopped")
    finally:
        launcher.kill()
        for pid in stack_processes(agent_name):
            os.kill(pid, 9)
