"""`python -m agent <command>`: LiveKit's worker CLI plus the project's own tools.

start | dev | console | connect   LiveKit Agents' CLI on agent/worker.py (see --help of each);
                                  also --stt, --language, --llm, --tts, --stt-fallback, --stt-options;
                                  dev runs `start` again on every save (agent/reload.py)
call                              join a room as a caller, speak, print both transcripts
gateway                           local LiveKit Inference + Cartesia STT endpoints (Moonshine)
transcribe FILE...                audio files to text/JSON/SRT with any STT descriptor
bench-stt --refs refs.tsv FILE... word error rate and speed of several STT descriptors
doctor                            check settings, keys, server, providers, models, audio devices
web [--host H] [--port P]         the browser page and its token endpoint (http://127.0.0.1:8000)
redispatch [--port P]             a livekit-server webhook: a call whose agent was lost gets one again
calls [ROOM] [--json]             the recent calls, or one call's turns and stage times (docs/calls.md)
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import warnings

from . import config, logs, reports
from .errors import AgentError

LIVEKIT_COMMANDS = ("start", "dev", "console", "connect")
# LiveKit's media runtime (tokio, in its FFI library) starts a worker thread per core in every
# call's process; for the one call a process holds, they mostly wake each other up. One is
# enough: 0.169 worker cores per call instead of 0.188 (4 calls on 2 cores,
# benchmarks/results/tuning.json). Left as it is when set.
MEDIA_THREADS = ("TOKIO_WORKER_THREADS", "1")
NEEDS_SERVER = ("start", "dev", "connect")
# the project's own commands: name -> module whose main(argv) runs it. The local services and
# developer tools are named, not imported, here: they build on the product, never the reverse.
TOOLS = {
    "web": "services.web",
    "redispatch": "services.redispatch",
    "gateway": "services.gateway.server",
    "call": "tools.caller",
    "transcribe": "tools.transcribe",
    "bench-stt": "tools.bench_stt",
    "doctor": "tools.doctor",
    "calls": "tools.calls",
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def run_worker(argv: list[str]) -> None:
    try:
        # our flags (--stt, --language, ...) go to config; LiveKit's CLI gets the rest
        flags, argv = config.split_cli_flags(argv)
        settings = config.Settings.from_env(cli=flags)  # also copies .env into the environment
        logs.log_format()  # a wrong LOG_FORMAT stops here, not after the worker registered
        if settings.job_executor == "process":  # a call per process (thread jobs share one)
            os.environ.setdefault(*MEDIA_THREADS)
        plan = config.resolve(settings)  # once: everything below reads this plan
        reports.prepare_prometheus(settings)  # before livekit.agents is imported
        print(config.describe(plan), file=sys.stderr)
        config.import_plugins(plan)  # on the main thread, as LiveKit requires
        config.check_components(plan)  # before the worker registers, not in every call
        from . import busy

        busy.check(plan)  # the busy message has a local voice
    except config.ConfigError as e:
        fail(str(e))
    if argv[0] in NEEDS_SERVER:
        missing = [
            name
            for name, value, flag in (
                ("LIVEKIT_URL", settings.livekit_url, "--url"),
                ("LIVEKIT_API_KEY", settings.livekit_api_key, "--api-key"),
                (
                    "LIVEKIT_API_SECRET",
                    settings.livekit_api_secret.get_secret_value(),
                    "--api-secret",
                ),
            )
            if not value and flag not in argv
        ]
        if missing:
            fail(
                f"{', '.join(missing)} not set: copy .env.example to .env "
                "(it matches scripts/livekit-server.sh) or export them"
            )

        port = settings.agent_http_port
        if port and not _port_free(port):
            fail(
                f"port {port} (the worker's health endpoint) is in use: stop the other worker or set AGENT_HTTP_PORT"
            )
        port = settings.prometheus_port
        if port and not _port_free(port):
            fail(f"port {port} (PROMETHEUS_PORT, the worker's metrics) is in use: choose another")

    from livekit.agents import cli

    from .worker import make_server

    if argv[0] == "console" and plan.turn_detection == "manual":
        from .push_to_talk import install_console_key

        install_console_key()  # the space bar is push-to-talk
    logs.worker_text_logs()
    sys.argv = [sys.argv[0], *argv]
    cli.run_app(make_server(plan))


def main(argv: list[str] | None = None) -> None:
    # the local dev server's secret ("secret") is short by design; PyJWT warns on every token
    warnings.filterwarnings("ignore", message="The HMAC key is")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if argv[0] == "dev":  # LiveKit's CLI no longer reloads in-process: a supervisor does
        from .reload import main as dev

        raise SystemExit(dev(argv[1:]))
    if argv[0] in LIVEKIT_COMMANDS:
        run_worker(argv)
    elif argv[0] in TOOLS:
        try:
            tool = importlib.import_module(TOOLS[argv[0]])
        except ModuleNotFoundError as e:
            if e.name != TOOLS[argv[0]].partition(".")[0]:
                raise
            # the image (Dockerfile) holds the product, agent/, and neither services/ nor tools/
            fail(
                f"{argv[0]} is a local service or developer tool: run it from a checkout of the project"
            )
        try:
            tool.main(argv[1:])
        except AgentError as e:
            fail(str(e))
    else:
        fail(f"unknown command {argv[0]!r}; commands: {', '.join(LIVEKIT_COMMANDS + tuple(TOOLS))}")


if __name__ == "__main__":
    main()
