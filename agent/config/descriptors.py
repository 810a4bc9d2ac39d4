"""Descriptors: `provider/model[:variant]` strings checked against agent/catalog.py.

A wrong value stops the worker (or is refused mid-call) with one line that says what to do
instead: an unknown model with the closest names, a language the model does not speak with the
models that do, an option out of range, a missing key or package.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .. import catalog
from ..catalog import Kind, Model
from ..errors import ConfigError
from .settings import Settings

_LANGUAGE_CODE = re.compile(r"^([a-z]{2,3}(-[A-Za-z0-9]{2,4})?|multi)$")


@dataclass(frozen=True)
class Descriptor:
    kind: Kind
    model: Model
    variant: str  # STT: language, TTS and realtime LLM: voice, other LLM: ""
    server: str = ""  # LLM on an OpenAI-compatible server: its name in the catalog

    def __str__(self) -> str:
        return f"{self.model.id}:{self.variant}" if self.variant else self.model.id

    @property
    def realtime(self) -> bool:
        return self.model.route == "realtime"


def parse(
    kind: Kind, text: str, name: str | None = None, language: str = "", language_name: str = ""
) -> Descriptor:
    """`provider/model[:variant]` (or `auto:<lang>`) -> a validated Descriptor, or a ConfigError
    saying why not; `name` is what the message calls the setting (default: STT/LLM/TTS).

    `local/auto` becomes the local model that speaks `language` (else its own `:language`);
    `language_name` is what a refusal calls the setting that chose that language."""
    name = name or kind.upper()
    text = text.strip()
    model_id, colon, variant = text.partition(":")
    auto = kind == "stt" and model_id == "auto"
    if not auto and (
        model_id.count("/") != 1
        or model_id.startswith("/")
        or model_id.endswith("/")
        or re.search(r"\s", text)
    ):
        raise ConfigError(
            f"{name}={text!r} is not a descriptor: use provider/model[:variant], "
            f"e.g. {catalog.LOCAL_DEFAULTS[kind]!r}"
        )
    if colon and not variant:
        what = {"stt": "a language", "tts": "a voice", "llm": "a voice"}[kind]
        raise ConfigError(f"{name}={text!r}: put {what} after ':' or drop the ':'")
    model_id = catalog.ALIASES.get(model_id, model_id)
    provider = model_id.split("/")[0]

    if kind == "llm" and provider in catalog.OPENAI_COMPATIBLE_SERVERS:
        if variant:
            raise ConfigError(f"{name}={text!r}: an LLM descriptor takes no ':variant'")
        model = Model("llm", provider, model_id.split("/", 1)[1], "openai")
        return Descriptor(kind, model, "", server=provider)

    model = catalog.MODELS.get((kind, model_id))
    if model is None:
        raise ConfigError(f"{name}: {_unknown(kind, model_id)}")
    variant = variant or model.default_variant
    if model.picks:
        return _pick(kind, model, language or variant or "en", language_name or name)
    if kind == "stt":
        _check_language(model, variant, name)
    if kind == "tts" and model.route == "local" and variant not in model.voices:
        raise ConfigError(
            f"{name}: {model.id} has no voice {variant!r} offline; voices: {', '.join(model.voices)}"
        )
    if kind == "llm" and variant and not model.voices:
        raise ConfigError(f"{name}={text!r}: an LLM descriptor takes no ':variant'")
    if kind == "llm" and model.voices and variant not in model.voices:
        close = difflib.get_close_matches(variant, model.voices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{name}: {model.id} has no voice {variant!r}; {hint}voices: {', '.join(model.voices)}"
        )
    return Descriptor(kind, model, variant)


def _unknown(kind: Kind, model_id: str) -> str:
    """Why a model id is not in the catalog, with the closest names that are."""
    other = [k for k in ("stt", "llm", "tts") if k != kind and (k, model_id) in catalog.MODELS]
    if other:
        article = "an" if other[0] in ("llm", "stt") else "a"  # "an S-T-T", "an L-L-M"
        return f"{model_id!r} is {article} {other[0].upper()} model: set it as {other[0].upper()}={model_id}"
    known = sorted(m.id for (k, _), m in catalog.MODELS.items() if k == kind)
    providers = sorted({m.split("/")[0] for m in known if "/" in m})
    provider = model_id.split("/")[0]
    if kind == "llm":
        providers = sorted({*providers, *catalog.OPENAI_COMPATIBLE_SERVERS})
    if provider not in providers:
        close = difflib.get_close_matches(provider, providers, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"unknown {kind.upper()} provider {provider!r}; {hint}providers: {', '.join(providers)}"
        )
    close = difflib.get_close_matches(model_id, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {kind.upper()} model {model_id!r}; {hint}known: {', '.join(known)}"


def _check_language(model: Model, language: str, name: str) -> None:
    if not _LANGUAGE_CODE.match(language):
        raise ConfigError(
            f"{name}: {language!r} is not a language code: use ISO 639-1 like 'en' or 'de' "
            f"(or 'multi' where the model takes it)"
        )
    base = language.split("-")[0]
    if model.languages and language not in model.languages and base not in model.languages:
        others = sorted(
            m.id for m in catalog.STT_MODELS if language in m.languages or base in m.languages
        )
        where = f"models that do: {', '.join(others)}" if others else "no model in the catalog does"
        raise ConfigError(f"{name}: {model.id} does not support language {language!r}; {where}")


def _pick(kind: Kind, auto: Model, language: str, name: str) -> Descriptor:
    """`local/auto`: the first of its models that speaks `language` (catalog.LOCAL_AUTO), with
    the language as its variant (STT) or the voice for it (TTS). A `multi` call's voice starts
    in catalog.MULTI_START and follows the caller (agent/switching.py)."""
    if kind == "stt":  # a language no local engine speaks: refused with the models that do
        _check_language(auto, language, name)
    elif language == catalog.MULTI:
        language = catalog.MULTI_START
    base = language.split("-")[0]
    for model_id in auto.picks:
        model = catalog.MODELS[(kind, model_id)]
        if base in model.languages:
            if kind == "stt":
                return Descriptor(kind, model, language)
            return Descriptor(kind, model, base if base in model.voices else model.default_variant)
    english = catalog.MODELS[(kind, auto.picks[0])]
    raise ConfigError(
        f"{name}: no local voice speaks {language!r} (local/auto picks from "
        f"{', '.join(auto.picks)}): set TTS to a cloud voice, or "
        f"TTS={english.id}:{english.default_variant} to answer in English"
    )


def with_language(desc: Descriptor, language: str, name: str = "LANGUAGE") -> Descriptor:
    """The same STT model in another language, validated."""
    _check_language(desc.model, language, name)
    return Descriptor(desc.kind, desc.model, language, desc.server)


# LiveKit's text end-of-turn model (livekit-plugins-turn-detector): its weights come from the
# Hugging Face Hub at `download-files` time, or it calls LiveKit Cloud (LIVEKIT_REMOTE_EOT_URL)
MULTILINGUAL_PACKAGE = "livekit-plugins-turn-detector==1.8.9"
NOISE_CANCELLATION_PACKAGE = "livekit-plugins-noise-cancellation==0.3.2"


def check_turns(settings: Settings) -> None:
    """Raise ConfigError unless the turn detector and noise cancellation chosen can run here."""
    if settings.turn_detection == "multilingual":
        label = setting_label(settings, "turn_detection")
        if importlib.util.find_spec("livekit.plugins.turn_detector") is None:
            raise ConfigError(
                f"{label} needs {MULTILINGUAL_PACKAGE} (`uv add {MULTILINGUAL_PACKAGE}`) and "
                f"its model files from the Hugging Face Hub, which this offline setup cannot "
                f"fetch; TURN_DETECTION=eot is LiveKit's newer end-of-turn model and runs here"
            )
        if not (os.environ.get("LIVEKIT_REMOTE_EOT_URL") or _multilingual_weights()):
            raise ConfigError(
                f"{label}: the model files of livekit/turn-detector are not downloaded: run "
                f"`uv run python -m livekit.agents download-files` once with internet access, "
                f"or use TURN_DETECTION=eot (runs offline)"
            )
    if settings.noise_cancellation:
        label = setting_label(settings, "noise_cancellation")
        if not (urlparse(settings.livekit_url).hostname or "").endswith(
            catalog.LIVEKIT_CLOUD_DOMAIN
        ):
            raise ConfigError(
                f"{label} is LiveKit Cloud's noise cancellation: it runs only in rooms on "
                f"LiveKit Cloud (LIVEKIT_URL=wss://<project>.livekit.cloud), not on this server; "
                f"unset NOISE_CANCELLATION"
            )
        if importlib.util.find_spec("livekit.plugins.noise_cancellation") is None:
            raise ConfigError(f"{label} needs `uv add {NOISE_CANCELLATION_PACKAGE}`")


def setting_label(settings: Settings, name: str) -> str:
    """`NAME=value (layer)`, for messages about a value a layer set."""
    source = settings.source(name)
    where = "" if source == "default" else f" ({source})"
    return f"{name.upper()}={getattr(settings, name)}{where}"


def _multilingual_weights() -> bool:
    from huggingface_hub import try_to_load_from_cache
    from livekit.plugins.turn_detector.models import HG_MODEL, MODEL_REVISIONS, ONNX_FILENAME

    found = try_to_load_from_cache(
        HG_MODEL, f"onnx/{ONNX_FILENAME}", revision=MODEL_REVISIONS["multilingual"]
    )
    return isinstance(found, str)


def check_reachable(settings: Settings, desc: Descriptor, label: str) -> None:
    """Raise ConfigError unless the credentials and endpoint the model goes through are set."""
    if desc.realtime and not own_key(settings, desc):
        raise ConfigError(
            f"{label}={desc} needs {desc.model.plugin_key}: realtime models talk to the "
            f"provider directly, with your own key"
        )
    if desc.model.route != "inference" or own_key(settings, desc):
        return
    if not settings.inference_url:
        via = f", or set {desc.model.plugin_key} to use the plugin" if desc.model.plugin_key else ""
        raise ConfigError(
            f"{label}={desc} goes through LiveKit Inference: point LIVEKIT_URL at a "
            f"LiveKit Cloud project or LIVEKIT_INFERENCE_URL at a gateway "
            f"(python -m agent gateway){via}; or use {catalog.LOCAL_DEFAULTS[desc.kind]!r}"
        )
    if not settings.inference_serves(desc.kind):
        raise ConfigError(
            f"{label}={desc} goes through LiveKit Inference, but LIVEKIT_INFERENCE_URL="
            f"{settings.inference_url} is a local gateway, which serves STT only: unset "
            f"{desc.kind.upper()} to use {catalog.LOCAL_DEFAULTS[desc.kind]!r}, or use LiveKit Cloud"
        )
    if not (settings.livekit_api_key and settings.livekit_api_secret.get_secret_value()):
        raise ConfigError(
            f"{label}={desc} needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET for LiveKit Inference"
        )


def check_package(desc: Descriptor, label: str = "") -> None:
    """Raise ConfigError unless the wheel (or system program) the model runs on is installed."""
    program = desc.model.program
    if program and shutil.which(program) is None:
        raise ConfigError(
            f"{label or desc.kind.upper()}={desc} needs the {program} program: run "
            f"scripts/setup.sh (or `apt-get install {program}`)"
        )
    if not desc.model.package:
        return
    module, requirement = desc.model.package.split("=", 1)
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{label or desc.kind.upper()}={desc} needs the Python package {requirement}: "
            f"run {install_hint(desc.model)}"
        )


def install_hint(model: Model) -> str:
    """How to install a model's package: local engines are project dependencies, realtime
    plugins are opt-in."""
    requirement = model.package.split("=", 1)[1]
    return (
        "`uv sync` (or scripts/setup.sh)" if model.route == "local" else f"`uv add {requirement}`"
    )


def own_key(settings: Settings, desc: Descriptor) -> str:
    """The user's own key for the model's provider plugin, "" when unset (or none applies)."""
    key = desc.model.plugin_key
    return getattr(settings, key.lower()).get_secret_value() if key else ""


def check_options(
    desc: Descriptor, options: dict[str, Any], source: str = "STT_OPTIONS", plugin: bool = False
) -> None:
    """Raise ConfigError unless every option applies to the model and is in range; `source`
    names where the options came from in the message. `plugin`: the model runs on its
    provider's plugin (the user's own key), which takes only `model.plugin.options`."""
    for key, value in options.items():
        spec = desc.model.options.get(key)
        if spec is None:
            allowed = ", ".join(sorted(desc.model.options)) or "none"
            takers = sorted(m.id for m in catalog.STT_MODELS if key in m.options)
            where = f"; {', '.join(takers)} take it" if takers else ""
            raise ConfigError(
                f"{source}: {key!r} does not apply to {desc.model.id} (it takes: {allowed}){where}"
            )
        if plugin and key not in desc.model.plugin.options:
            raise ConfigError(
                f"{source}: {key} is a LiveKit Inference option; the {desc.model.provider} plugin "
                f"(used because {desc.model.plugin_key} is set) has no such setting: remove it, "
                f"or unset {desc.model.plugin_key} to go through LiveKit Inference"
            )
        if spec.type is bool and not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, not {value!r}")
        if spec.type in (int, float):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (spec.type is int and not isinstance(value, int))
            ):
                raise ConfigError(
                    f"{source}: {key} must be a{'n integer' if spec.type is int else ' number'}, not {value!r}"
                )
            low_ok = spec.min is None or (
                value > spec.min if spec.exclusive_min else value >= spec.min
            )
            high_ok = spec.max is None or value <= spec.max
            if not (low_ok and high_ok):
                low = "-inf" if spec.min is None else spec.min
                high = "inf" if spec.max is None else spec.max
                bracket = "(" if spec.exclusive_min else "["
                raise ConfigError(
                    f"{source}: {key}={value} is out of range {bracket}{low}, {high}]"
                )
        if spec.type is str and not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise ConfigError(f"{source}: {key} must be a string or a list of strings")
