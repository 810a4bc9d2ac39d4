"""`python -m agent <command>`: LiveKit's worker CLI plus the project's own tools.

start | dev | console | connect   LiveKit Agents' CLI on agent/worker.py (see --help of each)
call                              join a room as a caller, speak, print both transcripts
"""

from __future__ import annotations

import importlib
import sys

from . import config

LIVEKIT_COMMANDS = ("start", "dev", "console", "connect")
NEEDS_SERVER = ("start", "dev", "connect")
# the project's own commands: name -> module whose main(argv) runs it
TOOLS = {
    "call": "agent.caller",
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_worker(argv: list[str]) -> None:
    try:
        settings = config.Settings.from_env()
        resolved = config.resolve(settings)
    except config.ConfigError as e:
        fail(str(e))
    print(config.describe(settings, resolved), file=sys.stderr)
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

    from livekit.agents import cli

    from .worker import make_server

    sys.argv = [sys.argv[0], *argv]
    cli.run_app(make_server(settings))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if argv[0] in LIVEKIT_COMMANDS:
        run_worker(argv)
    elif argv[0] in TOOLS:
        try:
            importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
        except config.ConfigError as e:
            fail(str(e))
    else:
        fail(f"unknown command {argv[0]!r}; commands: {', '.join(LIVEKIT_COMMANDS + tuple(TOOLS))}")


if __name__ == "__main__":
    main()
