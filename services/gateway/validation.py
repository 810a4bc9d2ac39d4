"""Request validation shared by every route: models, languages and options are checked with
the agent's own catalog, so the gateway refuses exactly what the agent would."""

from __future__ import annotations

from typing import Any

from agent import config
from agent.audio import RAW_ENCODINGS
from agent.errors import ConfigError


class BadRequestError(Exception):
    """A session parameter the real service would refuse; the message says which and why."""


def validate(model: str, language: str, options: dict[str, Any], source: str) -> None:
    """Check a model, language and provider options against the catalog, as the agent does."""
    base_language = language.split("-")[0] if language else ""
    try:
        desc = config.parse("stt", f"{model}:{base_language}" if base_language else model)
        if desc.model.route != "inference":
            raise ConfigError(f"{model} is not a LiveKit Inference model")
        config.check_options(desc, options, source=source)
    except ConfigError as e:
        raise BadRequestError(str(e)) from None


def check_audio_format(sample_rate: Any, encoding: Any) -> int:
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        raise BadRequestError(f"sample_rate {sample_rate!r} is not a number of Hz") from None
    if not 8000 <= rate <= 48000:
        raise BadRequestError(f"sample_rate {rate} is out of range [8000, 48000]")
    if encoding not in RAW_ENCODINGS:
        raise BadRequestError(f"encoding {encoding!r} is not one of: {', '.join(RAW_ENCODINGS)}")
    return rate
