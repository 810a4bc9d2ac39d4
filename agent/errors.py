"""The errors a user sees: each is one line that says what is wrong and what to do instead.

`python -m agent` prints any AgentError as `error: <message>` and exits with status 2.
"""


class AgentError(Exception):
    """A user-facing failure, worded as one actionable line."""


class ConfigError(AgentError, ValueError):
    """A setting, descriptor or option that cannot work, or a program or wheel it needs that is
    missing. The worker's settings are checked at startup; a call's dispatch metadata when the
    call starts, and a caller's attributes when they ask for a switch (refused: the call goes on
    as it was)."""


class AudioFileError(AgentError):
    """An audio file that cannot be transcribed as given (missing, empty, damaged, wrong format)."""


class ServiceError(AgentError):
    """A network service that cannot be reached or answered with an error, or an address this
    process cannot listen on (a port in use)."""
