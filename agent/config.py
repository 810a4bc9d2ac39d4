"""The typed config layer: settings in, the objects an AgentSession takes out.

Settings come from defaults < `.env` < the environment. Descriptors are looked up in
agent/catalog.py and validated here, at startup, so a wrong value stops the worker with one
line that says what to do instead of failing in the middle of a call.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr

from . import catalog
from .catalog import Kind, Model


class ConfigError(ValueError):
    """A configuration mistake, worded as one line that says how to fix it."""


class Settings(BaseModel):
    livekit_url: str = ""
    livekit_api_key: str = ""
    livekit_api_secret: SecretStr = SecretStr("")
    agent_name: str = "voice-agent"
    stt: str = ""  # empty: the default for what is reachable (catalog.*_DEFAULTS)
    llm: str = ""
    tts: str = ""
    stt_options: dict[str, Any] = Field(default_factory=dict)
    llm_base_url: str = ""
    livekit_inference_url: str = ""
    cartesia_api_key: SecretStr = SecretStr("")
    cartesia_base_url: str = ""
    turn_detection: Literal["eot", "vad"] = "eot"
    job_executor: Literal["thread", "process"] = "thread"
    load_threshold: float = Field(0.95, gt=0)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
        """Read settings from the environment (and `.env`, which the environment overrides)."""
        if dotenv and environ is None:
            from dotenv import load_dotenv

            load_dotenv(Path.cwd() / ".env", override=False)
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(name.upper(), "").strip()
            if raw:
                values[name] = raw
        if "stt_options" in values:
            try:
                values["stt_options"] = json.loads(values["stt_options"])
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"STT_OPTIONS must be a JSON object, e.g. '{{\"min_volume\": 0.1}}' ({e.msg})"
                ) from None
        try:
            return cls(**values)
        except Exception as e:  # pydantic's report, folded into one line
            errors = getattr(e, "errors", lambda: [])()
            first = errors[0] if errors else {"loc": ("?",), "msg": str(e)}
            raise ConfigError(f"{str(first['loc'][0]).upper()}: {first['msg']}") from None

    @property
    def inference_url(self) -> str:
        """Where LiveKit Inference is reached, or "" when it cannot be."""
        if self.livekit_inference_url:
            return self.livekit_inference_url
        host = urlparse(self.livekit_url).hostname or ""
        return "https://agent-gateway.livekit.cloud/v1" if host.endswith(".livekit.cloud") else ""

    def descriptor(self, kind: Kind) -> str:
        chosen = getattr(self, kind)
        if chosen:
            return chosen
        defaults = catalog.CLOUD_DEFAULTS if self.inference_url else catalog.LOCAL_DEFAULTS
        return defaults[kind]

    def uses_local_defaults(self) -> bool:
        return not any(getattr(self, k) for k in ("stt", "llm", "tts")) and not self.inference_url


@dataclass(frozen=True)
class Descriptor:
    kind: Kind
    model: Model
    variant: str  # STT: language, TTS: voice, LLM: ""
    server: str = ""  # LLM on an OpenAI-compatible server: its name in the catalog

    def __str__(self) -> str:
        return f"{self.model.id}:{self.variant}" if self.variant else self.model.id


def parse(kind: Kind, text: str) -> Descriptor:
    """`provider/model[:variant]` -> a validated Descriptor, or a ConfigError saying why not."""
    name = kind.upper()
    text = text.strip()
    if text.count("/") != 1 or text.startswith("/") or text.split(":")[0].endswith("/"):
        raise ConfigError(
            f"{name}={text!r} is not a descriptor: use provider/model[:variant], "
            f"e.g. {catalog.LOCAL_DEFAULTS[kind]!r}"
        )
    model_id, _, variant = text.partition(":")
    model_id = catalog.ALIASES.get(model_id, model_id)
    provider = model_id.split("/")[0]

    if kind == "llm" and provider in catalog.OPENAI_COMPATIBLE_SERVERS:
        model = Model("llm", provider, model_id.split("/", 1)[1], "openai")
        return Descriptor(kind, model, "", server=provider)

    model = catalog.MODELS.get((kind, model_id))
    if model is None:
        known = [m.id for (k, _), m in catalog.MODELS.items() if k == kind]
        close = difflib.get_close_matches(model_id, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{name}: unknown {kind.upper()} model {model_id!r}; {hint}"
            f"known: {', '.join(sorted(known))}"
        )
    variant = variant or model.default_variant
    if kind == "stt" and model.languages and variant not in model.languages:
        others = sorted(m.id for m in catalog.STT_MODELS if variant in m.languages)
        where = f"models that do: {', '.join(others)}" if others else "no model in the catalog does"
        raise ConfigError(f"{name}: {model.id} does not support language {variant!r}; {where}")
    if kind == "tts" and model.route == "local" and variant not in model.voices:
        raise ConfigError(
            f"{name}: {model.id} has no voice {variant!r} offline; voices: {', '.join(model.voices)}"
        )
    if kind == "llm" and variant:
        raise ConfigError(f"{name}={text!r}: an LLM descriptor takes no ':variant'")
    return Descriptor(kind, model, variant)


def resolve(settings: Settings) -> dict[Kind, Descriptor]:
    """Parse and check the three descriptors against the credentials they need."""
    resolved = {kind: parse(kind, settings.descriptor(kind)) for kind in ("stt", "llm", "tts")}
    for kind, desc in resolved.items():
        needs_inference = desc.model.route == "inference" and not _plugin_key(settings, desc)
        if needs_inference and not settings.inference_url:
            via = (
                f", or set {desc.model.plugin_key} to use the plugin"
                if desc.model.plugin_key
                else ""
            )
            raise ConfigError(
                f"{kind.upper()}={desc} goes through LiveKit Inference: point LIVEKIT_URL at a "
                f"LiveKit Cloud project or LIVEKIT_INFERENCE_URL at a gateway "
                f"(python -m agent gateway){via}; or use {catalog.LOCAL_DEFAULTS[kind]!r}"
            )
        if needs_inference and not (
            settings.livekit_api_key and settings.livekit_api_secret.get_secret_value()
        ):
            raise ConfigError(
                f"{kind.upper()}={desc} needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET for LiveKit Inference"
            )
    for desc in resolved.values():
        _check_package(desc)
    _check_options(resolved["stt"], settings.stt_options)
    return resolved


def _check_package(desc: Descriptor) -> None:
    if not desc.model.package:
        return
    module, requirement = desc.model.package.split("=", 1)
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{desc.kind.upper()}={desc} needs the Python package {requirement}: run `uv sync` "
            f"(or scripts/setup.sh)"
        )


def _plugin_key(settings: Settings, desc: Descriptor) -> str:
    key = desc.model.plugin_key
    return getattr(settings, key.lower()).get_secret_value() if key else ""


def _check_options(desc: Descriptor, options: dict[str, Any]) -> None:
    for key, value in options.items():
        spec = desc.model.options.get(key)
        if spec is None:
            allowed = ", ".join(sorted(desc.model.options)) or "none"
            raise ConfigError(
                f"STT_OPTIONS: {key!r} does not apply to {desc.model.id} (it takes: {allowed})"
            )
        if spec.type is bool and not isinstance(value, bool):
            raise ConfigError(f"STT_OPTIONS: {key} must be true or false, not {value!r}")
        if spec.type in (int, float):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (spec.type is int and not isinstance(value, int))
            ):
                raise ConfigError(
                    f"STT_OPTIONS: {key} must be a{'n integer' if spec.type is int else ' number'}, not {value!r}"
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
                    f"STT_OPTIONS: {key}={value} is out of range {bracket}{low}, {high}]"
                )
        if spec.type is str and not isinstance(value, (str, list)):
            raise ConfigError(f"STT_OPTIONS: {key} must be a string or a list of strings")


# -- building the session's components -------------------------------------------------------
# One builder per (kind, route): adding a provider means a catalog row, not a new branch.


def _local_stt(desc: Descriptor, settings: Settings):
    from .plugins.moonshine import MoonshineSTT

    return MoonshineSTT(language=desc.variant)


def _inference_stt(desc: Descriptor, settings: Settings):
    from livekit.agents import inference

    if _plugin_key(settings, desc):  # the user's own provider account
        from livekit.plugins import cartesia

        return cartesia.STT(
            model=desc.model.name,  # explicit: the plugin would silently pick ink-2 for English
            language=desc.variant,
            api_key=_plugin_key(settings, desc),
            **({"base_url": settings.cartesia_base_url} if settings.cartesia_base_url else {}),
        )
    if not settings.stt_options and not settings.livekit_inference_url:
        return str(desc)  # exactly the descriptor LiveKit's docs show
    return inference.STT(
        model=desc.model.id,
        language=desc.variant,
        extra_kwargs=dict(settings.stt_options),
        base_url=settings.inference_url,
    )


def _local_llm(desc: Descriptor, settings: Settings):
    from .plugins.echo import EchoLLM

    return EchoLLM()


def _openai_llm(desc: Descriptor, settings: Settings):
    from livekit.plugins import openai

    base_url = settings.llm_base_url or catalog.OPENAI_COMPATIBLE_SERVERS[desc.server]
    return openai.LLM(model=desc.model.name, base_url=base_url, api_key="local")


def _inference_llm(desc: Descriptor, settings: Settings):
    from livekit.agents import inference

    if not settings.livekit_inference_url:
        return str(desc)
    return inference.LLM(model=desc.model.id, base_url=settings.inference_url)


def _local_tts(desc: Descriptor, settings: Settings):
    from .plugins.hibari import HibariTTS

    return HibariTTS(voice=desc.variant)


def _inference_tts(desc: Descriptor, settings: Settings):
    from livekit.agents import inference

    if not settings.livekit_inference_url:
        return str(desc)
    return inference.TTS(model=desc.model.id, voice=desc.variant, base_url=settings.inference_url)


BUILDERS = {
    ("stt", "local"): _local_stt,
    ("stt", "inference"): _inference_stt,
    ("llm", "local"): _local_llm,
    ("llm", "openai"): _openai_llm,
    ("llm", "inference"): _inference_llm,
    ("tts", "local"): _local_tts,
    ("tts", "inference"): _inference_tts,
}


def build(desc: Descriptor, settings: Settings):
    """The STT/LLM/TTS object (or LiveKit descriptor string) an AgentSession takes."""
    return BUILDERS[(desc.kind, desc.model.route)](desc, settings)


def turn_handling(settings: Settings) -> dict[str, Any]:
    """End-of-turn and interruption settings that never call the cloud.

    In dev/console mode LiveKit picks its cloud turn detector and adaptive interruption model;
    the end-of-turn model embedded in livekit-local-inference ("v1-mini") runs here instead.
    """
    from livekit.agents import inference

    detector = (
        inference.TurnDetector(version="v1-mini") if settings.turn_detection == "eot" else "vad"
    )
    return {"turn_detection": detector, "interruption": {"mode": "vad"}}


def describe(settings: Settings, resolved: dict[Kind, Descriptor]) -> str:
    """One startup log line: what the session will use and where it came from (no secrets)."""
    origin = "embedded local defaults" if settings.uses_local_defaults() else "configured"
    parts = [f"{k.upper()}={d}" for k, d in resolved.items()]
    if settings.stt_options:
        parts.append(f"STT_OPTIONS={json.dumps(settings.stt_options, sort_keys=True)}")
    if settings.livekit_inference_url:
        parts.append(f"LIVEKIT_INFERENCE_URL={settings.livekit_inference_url}")
    return f"session ({origin}): " + " ".join(parts)
