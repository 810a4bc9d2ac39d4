"""LiveKit's stt.FallbackAdapter, plus the `update_options(language=...)` it lacks.

FallbackAdapter has no update_options: calling it on the adapter would fail (or, through a
duck-typed `hasattr` check, silently change nothing) while every member keeps its old
language. FallbackSTT hands the change to each member: running streams of the members that
support it (LiveKit Inference, Cartesia) pick it up at once, the others on their next stream.
"""

from __future__ import annotations

from livekit.agents import stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given


class FallbackSTT(stt.FallbackAdapter):
    @property
    def members(self) -> list[stt.STT]:
        """The configured STTs in order (unwrapped from the VAD StreamAdapter of batch ones).
        `_stt_instances` is private (checked on 1.8.9 by tests/test_livekit_hooks.py)."""
        return [
            m.wrapped_stt if isinstance(m, stt.StreamAdapter) else m for m in self._stt_instances
        ]

    def update_options(self, *, language: NotGivenOr[str] = NOT_GIVEN) -> None:
        """Change the language of every member. Validate first (config.resolve does): a
        member that refuses it raises after the ones before it changed. Members without
        update_options are single-language local engines, which validation already held to
        their one language."""
        if not is_given(language):
            return
        for member in self.members:
            if hasattr(member, "update_options"):
                member.update_options(language=language)
