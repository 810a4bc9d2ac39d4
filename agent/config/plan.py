"""The settings resolved once: what a session runs, checked, as one immutable value.

`resolve(settings)` parses and checks every descriptor (the whole STT chain, the LLM, the
voice), applies LANGUAGE once, picks the turn detection the call's language runs with and
returns a `Plan`. Everything downstream reads the plan and derives nothing again: the worker's
startup checks, the preload and prewarm, each call (agent/switching.py lays the dispatch and
participant layers over the worker's plan with `Plan.with_layer`), the busy answer and the
tools. A plan is picklable: the worker hands its own to every call's process (agent/worker.py).

Which LANGUAGE applies: LANGUAGE is the language of every STT of the chain, except when a
higher layer than the one that set LANGUAGE chose an STT descriptor with its own `:lang`: the
layer that spoke last chose the language (`language_applies`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .. import catalog
from ..errors import ConfigError
from .descriptors import (
    Descriptor,
    check_options,
    check_package,
    check_reachable,
    check_turns,
    own_key,
    parse,
    setting_label,
    with_language,
)
from .settings import LAYERS, Settings

logger = logging.getLogger("agent.config")


@dataclass(frozen=True)
class Plan:
    settings: Settings  # the layered values and the layer that set each (`source`, `label`)
    stt: tuple[Descriptor, ...]  # in the order they are tried: STT, then STT_FALLBACK
    llm: Descriptor
    tts: Descriptor
    languages: tuple[str, ...]  # a `multi` call's candidate languages (LANGUAGES); (): any
    turn_detection: str  # the mode this call runs: `auto` and fallbacks resolved
    endpointing: tuple[float, float]  # (min, max) delay of that mode

    @property
    def language(self) -> str:
        """The call's language: the primary STT's."""
        return self.stt[0].variant

    @property
    def components(self) -> dict[str, Descriptor]:
        """The primary STT, the LLM and the voice, for messages and checks."""
        return {"stt": self.stt[0], "llm": self.llm, "tts": self.tts}

    def with_layer(self, layer: str, values: dict[str, Any]) -> Plan:
        """The plan of these settings with `values` laid over them by `layer` (LAYERS)."""
        return resolve(self.settings.with_layer(layer, values)) if values else self


def language_applies(settings: Settings) -> bool:
    """Whether LANGUAGE sets the language of the STT chain: it does unless a higher layer chose
    an STT descriptor that names its own language (`cartesia/ink-whisper:de` from the dispatch
    beats LANGUAGE=fr from .env; `local/auto` names none, so LANGUAGE still picks for it)."""
    if not settings.language:
        return False
    above = LAYERS.index(settings.source("stt")) > LAYERS.index(settings.source("language"))
    return not (above and ":" in settings.stt)


def resolve(settings: Settings) -> Plan:
    """The Plan of `settings`, or a ConfigError saying what to change."""
    chain = _stt_chain(settings)
    llm = parse("llm", settings.descriptor("llm"), settings.label("llm"))
    # a local voice follows the call's language (local/auto)
    tts = parse("tts", settings.descriptor("tts"), settings.label("tts"), chain[0].variant)
    checks = [(settings.label("stt"), chain[0])]
    checks += [(settings.label("stt_fallback"), d) for d in chain[1:]]
    checks += [(settings.label("llm"), llm), (settings.label("tts"), tts)]
    for label, desc in checks:
        check_reachable(settings, desc, label)
        check_package(desc, label)
    languages = _candidates(settings)
    check_options(
        chain[0],
        settings.stt_options,
        source=settings.label("stt_options"),
        plugin=bool(own_key(settings, chain[0])),
    )
    check_turns(settings)
    mode = _turn_mode(settings.turn_detection, chain[0].variant)
    return Plan(
        settings=settings,
        stt=tuple(chain),
        llm=llm,
        tts=tts,
        languages=languages,
        turn_detection=mode,
        endpointing=settings.endpointing_for(mode),
    )


def _stt_chain(settings: Settings) -> list[Descriptor]:
    """STT then STT_FALLBACK, each with the LANGUAGE that applies, applied once: `local/auto`
    picks its engine for it, any other descriptor takes it as its language."""
    language = settings.language if language_applies(settings) else ""
    language_label = settings.label("language")
    texts = [(settings.label("stt"), settings.descriptor("stt"))]
    if settings.stt_fallback:
        label = settings.label("stt_fallback")
        for item in settings.stt_fallback.split(","):
            if not item.strip():
                raise ConfigError(
                    f"{label}={settings.stt_fallback!r} has an empty entry: separate "
                    f"descriptors with single commas"
                )
            texts.append((label, item))
    chain = []
    for label, text in texts:
        desc = parse("stt", text, label, language, language_label)
        if language and desc.variant != language:
            desc = with_language(desc, language, f"{language_label} for {desc.model.id}")
        chain.append(desc)
    ids = [d.model.id for d in chain]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(
            f"{settings.label('stt_fallback')}: {repeated} appears twice in STT + STT_FALLBACK"
        )
    return chain


def _candidates(settings: Settings) -> tuple[str, ...]:
    """LANGUAGES as a tuple of codes (empty: any), each one checked: a language Whisper
    detects and, when the voice is `local/auto`, one a local voice speaks."""
    if not settings.languages:
        return ()
    label = setting_label(settings, "languages")
    codes = tuple(dict.fromkeys(c.strip() for c in settings.languages.split(",")))
    for code in codes:
        if code not in catalog.WHISPER_LANGUAGES:
            raise ConfigError(
                f"{label}: {code!r} is not a language Whisper detects: use comma-separated "
                f"ISO 639-1 codes like en,de,es"
            )
    voice = catalog.MODELS.get(("tts", settings.descriptor("tts").partition(":")[0]))
    if voice is not None and voice.picks:  # refused now, not when the caller first speaks it
        for code in codes:
            parse("tts", settings.descriptor("tts"), settings.label("tts"), code, label)
    return codes


_fallbacks_logged: set[tuple[str, str]] = set()


def _turn_mode(mode: str, language: str) -> str:
    """The turn detection a call in `language` runs: TURN_DETECTION=auto picks the measured
    default for the language (catalog.TURN_DETECTION_BY_LANGUAGE); a detector that does not
    speak it (catalog.TURN_DETECTOR_LANGUAGES) gives way to catalog.TURN_DETECTION_FALLBACK,
    said once per process and language."""
    language = language.split("-")[0]
    if mode == "auto":
        mode = catalog.TURN_DETECTION_BY_LANGUAGE.get(language, catalog.TURN_DETECTION_DEFAULT)
    speaks = catalog.TURN_DETECTOR_LANGUAGES.get(mode)
    if speaks is None or language in speaks:
        return mode
    if (mode, language) not in _fallbacks_logged:
        _fallbacks_logged.add((mode, language))
        logger.info(
            "TURN_DETECTION=%s does not speak %r: this call ends turns with %s",
            mode,
            language,
            catalog.TURN_DETECTION_FALLBACK,
        )
    return catalog.TURN_DETECTION_FALLBACK
