"""The errors a user sees: each is one line that says what is wrong and what to do instead.

`python -m agent` prints any AgentError as `error: <message>` and exits with status 2.
"""


class AgentError(Exception):
    """A user-facing failure, worded as one actionable line."""


class ConfigError(AgentError, ValueError):
    """A setting, descriptor or option that cannot work (found at startup, not mid-call)."""


class AudioFileError(AgentError):
    """An audio file that cannot be transcribed as given (missing, empty, damaged, wrong format)."""


class ServiceError(AgentError):
    """A network service that cannot be reached or answered with an error."""
