"""The private parts of livekit-agents the project leans on, checked against the installed
library: when an upgrade renames or reshapes one, this fails here, by name, instead of a call
failing in production. Each hook is documented at its one place of use (checked on 1.8.9).
"""

from __future__ import annotations

import inspect

import pytest
from livekit.agents import AgentServer, ipc, stt
from livekit.agents.cli import _legacy, cli, log

pytestmark = pytest.mark.unit


def test_the_process_pool_reports_a_job_process_closing():
    # agent/recovery.py: server._proc_pool.on("process_closed", ...) re-dispatches a dead call
    source = inspect.getsource(AgentServer)
    assert "self._proc_pool = ipc.proc_pool.ProcPool(" in source
    assert "process_closed" in ipc.proc_pool.EventTypes.__args__
    assert {"running_job", "status"} <= set(dir(ipc.job_proc_executor.ProcJobExecutor))
    assert ipc.job_executor.JobStatus.FAILED


def test_the_fallback_adapter_keeps_its_members_in_order():
    # agent/fallback.py: FallbackSTT.members reads stt.FallbackAdapter._stt_instances
    assert "self._stt_instances = stt" in inspect.getsource(stt.FallbackAdapter.__init__)
    assert "wrapped_stt" in dir(stt.StreamAdapter)


def test_the_console_reads_keys_through_its_module_readkey():
    # agent/push_to_talk.py: install_console_key wraps _legacy.readkey before the console starts
    assert callable(_legacy.readkey)
    assert "readkey()" in inspect.getsource(_legacy)
    assert callable(_legacy.AgentsConsole.get_instance)
    assert isinstance(_legacy.AgentsConsole.console_mode, property)


def test_the_cli_sets_up_logging_through_a_module_global():
    # agent/logs.py: worker_text_logs replaces cli.setup_logging (start has no compact flag)
    assert "from .log import setup_logging" in inspect.getsource(cli)
    params = list(inspect.signature(log.setup_logging).parameters)
    assert params == ["log_level", "devmode", "console", "compact"]
    assert "setup_logging(args.log_level" in inspect.getsource(cli)
