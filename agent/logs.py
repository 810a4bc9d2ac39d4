"""How every process of the stack logs: one human-readable line per event, JSON when asked.

`LOG_FORMAT=text` (the default) prints `12:00:01 INFO  services.web  message {extra}`, in LiveKit's
own colored console style for the worker; `LOG_FORMAT=json` prints LiveKit's JSON lines, for log
collectors.
"""

from __future__ import annotations

import functools
import logging
import os

TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s  %(message)s"


def log_format() -> str:
    value = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"
    if value not in ("text", "json"):
        from .errors import ConfigError

        raise ConfigError(f"LOG_FORMAT={value!r}: use 'text' (the default) or 'json'")
    return value


def setup(level: int = logging.INFO) -> None:
    """For the project's own servers (page, gateway): the same two formats as the worker."""
    handler = logging.StreamHandler()
    if log_format() == "json":
        from livekit.agents.cli.log import JsonFormatter  # LiveKit's own JSON lines

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, datefmt="%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("aiohttp.server").addFilter(one_line_for_bad_http)


def one_line_for_bad_http(record: logging.LogRecord) -> bool:
    """A malformed request (a 20 KB header, a broken request line) is the client's error:
    aiohttp answers it with a 400 and logs a traceback at ERROR; make that one WARNING line."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and exc.code < 500:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        # the type, not the message: that quotes the request's bytes, perhaps a credential
        record.msg, record.args = (
            "bad HTTP request refused (%d): %s",
            (exc.code, type(exc).__name__),
        )
        record.exc_info = record.exc_text = None
    return True


def worker_text_logs() -> None:
    """Make `python -m agent start` log in LiveKit's compact colored style, as `dev` does,
    instead of JSON: LiveKit's `start` command has no flag for it, so its setup is wrapped
    (a module global of LiveKit's CLI, checked on 1.8.9 by tests/test_livekit_hooks.py)."""
    if log_format() == "json":
        return
    from livekit.agents.cli import cli

    original = cli.setup_logging
    cli.setup_logging = functools.wraps(original)(
        lambda level, devmode, console, compact=False: original(
            level, devmode=True, console=console, compact=True
        )
    )
