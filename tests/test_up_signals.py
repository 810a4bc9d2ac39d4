"""`kill -INT` stops scripts/up.sh even when a script started it in the background, where bash
ignores SIGINT (issue 33): every process of the stack is gone and the script says so."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.test_up import assert_stopped, kill_leftovers, stack_processes, up_run
from tools import stack
from tools.stack import ROOT

pytestmark = pytest.mark.e2e


def test_kill_int_stops_up_sh_started_in_the_background_by_a_script():
    env, agent_name, log = up_run("sigint")
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
        assert_stopped(agent_name, log, 15, "kill -INT")
    finally:
        launcher.kill()
        kill_leftovers(agent_name)
