"""The typed config layer: settings in, the objects an AgentSession takes out.

Settings are laid over each other in LAYERS order, each overriding the ones before it:

    default < .env < environment < cli < dispatch < participant

`cli` are the flags of `python -m agent start|dev|console|connect` (CLI_FLAGS), `dispatch` the
JSON metadata of the agent dispatch, `participant` the caller's attributes `stt` and
`language`. The last two apply per call (agent/switching.py) and may set only the keys in
LAYER_KEYS. Descriptors are looked up in agent/catalog.py and validated here, so a wrong value
stops the worker (or is refused mid-call) with one line that says what to do instead.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from . import catalog
from .catalog import Kind, Model


class ConfigError(ValueError):
    """A configuration mistake, worded as one line that says how to fix it."""


LAYERS = ("default", ".env", "environment", "cli", "dispatch", "participant")
# the per-call layers may only choose models; keys, URLs and worker options stay the worker's
# how a call takes turns (TURN_KEYS) may differ per dispatch too
TURN_KEYS = (
    "turn_detection",
    "min_endpointing_delay",
    "max_endpointing_delay",
    "allow_interruptions",
    "min_interruption_duration",
    "min_interruption_words",
    "preemptive_generation",
    "preemptive_tts",
)
LAYER_KEYS = {
    "dispatch": ("stt", "language", "stt_options", "stt_fallback", "llm", "tts", *TURN_KEYS),
    "participant": ("stt", "language"),
}
CLI_FLAGS = {
    "--stt": "stt",
    "--language": "language",
    "--stt-options": "stt_options",
    "--stt-fallback": "stt_fallback",
    "--llm": "llm",
    "--tts": "tts",
}
# how the flags reach the job processes (and prewarm): __main__ strips them from argv, since
# LiveKit's CLI owns it, and exports them here as JSON
CLI_ENV = "AGENT_CLI_SETTINGS"
_LANGUAGE_CODE = re.compile(r"^([a-z]{2,3}(-[A-Za-z0-9]{2,4})?|multi)$")
_dotenv_keys: set[str] = set()  # what load_dotenv added to os.environ: still the .env layer


# TURN_DETECTION -> (min, max) endpointing delay in seconds when not set, chosen with
# benchmarks/latency.py: the shortest wait that never answers into a 400 ms pause mid-sentence.
# The end-of-turn models wait `max` when they think the user is not done; push-to-talk and the
# STT's own end of speech need no extra wait.
ENDPOINTING_DEFAULTS: dict[str, tuple[float, float]] = {
    "eot": (0.5, 1.0),
    "multilingual": (0.5, 1.0),
    "vad": (0.5, 0.5),
    "stt": (0.0, 0.0),
    "manual": (0.0, 0.0),
}


class Settings(BaseModel):
    livekit_url: str = ""
    livekit_api_key: str = ""
    livekit_api_secret: SecretStr = SecretStr("")
    agent_name: str = "voice-agent"
    stt: str = ""  # empty: the default for what is reachable (catalog.*_DEFAULTS)
    llm: str = ""
    tts: str = ""
    language: str = ""  # overrides the language of every STT descriptor (primary and fallbacks)
    stt_options: dict[str, Any] = Field(default_factory=dict)
    stt_fallback: str = ""  # comma-separated STT descriptors tried in order when the STT fails
    llm_base_url: str = ""
    livekit_inference_url: str = ""
    cartesia_api_key: SecretStr = SecretStr("")
    cartesia_base_url: str = ""
    openai_api_key: SecretStr = SecretStr("")  # realtime/openai
    google_api_key: SecretStr = SecretStr("")  # realtime/gemini
    xai_api_key: SecretStr = SecretStr("")  # realtime/xai
    # turn-taking: LiveKit's turn_handling (see turn_handling()); defaults by measurement,
    # benchmarks/latency.py
    turn_detection: Literal["eot", "vad", "stt", "manual", "multilingual"] = "eot"
    # seconds of silence before the turn ends (min) or, when the end-of-turn model thinks the
    # user is not done, at most (max); unset: ENDPOINTING_DEFAULTS for the mode
    min_endpointing_delay: float | None = Field(None, ge=0, le=10)
    max_endpointing_delay: float | None = Field(None, ge=0, le=30)
    allow_interruptions: bool = True
    min_interruption_duration: float = Field(0.5, ge=0, le=10)
    min_interruption_words: int = Field(0, ge=0, le=50)
    preemptive_generation: bool = True
    preemptive_tts: bool = True
    noise_cancellation: Literal["", "bvc", "bvc-telephony", "nc"] = ""
    job_executor: Literal["thread", "process"] = "thread"
    load_threshold: float = Field(1.0, gt=0)  # see worker.make_server
    agent_http_port: int = Field(8081, ge=0, le=65535)  # the worker's health endpoint; 0 = any
    # the browser page and its token endpoint (agent/web.py)
    web_host: str = "127.0.0.1"
    web_port: int = Field(8000, ge=0, le=65535)
    token_endpoint_secret: SecretStr = SecretStr("")  # required to bind beyond loopback
    web_allowed_origins: str = ""  # comma-separated origins allowed cross-origin (CORS)
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _delays_in_order(self) -> Settings:
        low, high = self.endpointing
        if high < low:
            raise ValueError(
                f"MAX_ENDPOINTING_DELAY={high} is below MIN_ENDPOINTING_DELAY={low} "
                f"(TURN_DETECTION={self.turn_detection}): the longest wait for the end of a "
                f"turn cannot be shorter than the shortest"
            )
        return self

    @property
    def endpointing(self) -> tuple[float, float]:
        """(min, max) endpointing delay: the settings, else the mode's measured defaults."""
        low, high = ENDPOINTING_DEFAULTS[self.turn_detection]
        if self.min_endpointing_delay is not None:
            low = self.min_endpointing_delay
            high = max(high, low)  # a longer min stretches the default max along
        if self.max_endpointing_delay is not None:
            high = self.max_endpointing_delay
        return low, high

    @classmethod
    def from_env(
        cls,
        environ: dict[str, str] | None = None,
        dotenv: bool | Path = True,
        cli: dict[str, Any] | None = None,
    ) -> Settings:
        """Defaults < `.env` < the environment < CLI flags (`cli`, else $AGENT_CLI_SETTINGS).

        `dotenv` is the .env file to read (True: ./.env, only when reading os.environ)."""
        env = dict(os.environ if environ is None else environ)
        path = dotenv if isinstance(dotenv, Path) else None
        if dotenv is True and environ is None:
            path = Path.cwd() / ".env"
        from_file: dict[str, str] = {}
        if path is not None and path.exists():
            from dotenv import dotenv_values, load_dotenv

            from_file = {k: v for k, v in dotenv_values(path).items() if v is not None}
            if environ is None:  # LiveKit's CLI reads LIVEKIT_* from os.environ as well
                _dotenv_keys.update(k for k in from_file if k not in os.environ)
                load_dotenv(path, override=False)
        env = {k: v for k, v in env.items() if k not in _dotenv_keys or environ is not None}
        if cli is None:
            try:
                cli = json.loads(env.get(CLI_ENV) or "{}")
            except json.JSONDecodeError:
                cli = {}
        settings = cls()
        for layer, source in ((".env", from_file), ("environment", env)):
            values = {}
            for name in cls.model_fields:
                raw = (source.get(name.upper()) or "").strip()
                if raw:
                    values[name] = raw
            settings = settings.with_layer(layer, values)
        return settings.with_layer("cli", cli)

    def with_layer(self, layer: str, values: dict[str, Any]) -> Settings:
        """These settings with `values` (setting name -> value) laid over them by `layer`.

        A layer that sets `stt` with a `:language` but no `language` of its own drops the
        `language` of the layers below: the descriptor it chose says which language it wants."""
        if not values:
            return self
        allowed = LAYER_KEYS.get(layer, tuple(type(self).model_fields))
        for key in values:
            if key not in allowed:
                raise ConfigError(
                    f"{layer}: {key!r} cannot be set here; allowed: {', '.join(allowed)}"
                )
        values = dict(values)
        if isinstance(values.get("stt_options"), str):
            try:
                values["stt_options"] = json.loads(values["stt_options"])
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"STT_OPTIONS ({layer}) must be a JSON object, e.g. "
                    f"'{{\"min_volume\": 0.1}}' ({e.msg})"
                ) from None
        if "stt_options" in values and not isinstance(values["stt_options"], dict):
            raise ConfigError(
                f"STT_OPTIONS ({layer}) must be a JSON object, e.g. '{{\"min_volume\": 0.1}}', "
                f"not {values['stt_options']!r}"
            )
        if ":" in str(values.get("stt", "")) and "language" not in values and self.language:
            values["language"] = ""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(values)
        try:
            new = type(self).model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            if not first["loc"]:  # a check across settings (model_validator) names them itself
                raise ConfigError(
                    f"{first['msg'].removeprefix('Value error, ')} ({layer})"
                ) from None
            raise ConfigError(f"{str(first['loc'][0]).upper()} ({layer}): {first['msg']}") from None
        new._sources = {**self._sources, **dict.fromkeys(values, layer)}
        return new

    def source(self, name: str) -> str:
        """The layer that set a setting (LAYERS), "default" if none did."""
        return self._sources.get(name, "default")

    def label(self, name: str) -> str:
        """`NAME` or `NAME (layer)`, for messages about a value a layer set."""
        source = self.source(name)
        return name.upper() if source == "default" else f"{name.upper()} ({source})"

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


def split_cli_flags(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(settings from CLI_FLAGS, the rest of argv for LiveKit's CLI)."""
    values: dict[str, str] = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag not in CLI_FLAGS:
            rest.append(arg)
            continue
        if not eq:
            value = next(args, "")
        if not value or value.startswith("--"):
            raise ConfigError(f"{flag} needs a value, e.g. {flag} {_example(CLI_FLAGS[flag])}")
        values[CLI_FLAGS[flag]] = value
    return values, rest


def _example(setting: str) -> str:
    examples = {"language": "de", "stt_options": "'{\"min_volume\": 0.1}'"}
    return examples.get(setting, catalog.LOCAL_DEFAULTS.get(setting, "local/moonshine-tiny:en"))


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


def parse(kind: Kind, text: str, name: str | None = None) -> Descriptor:
    """`provider/model[:variant]` (or `auto:<lang>`) -> a validated Descriptor, or a ConfigError
    saying why not; `name` is what the message calls the setting (default: STT/LLM/TTS)."""
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


def with_language(desc: Descriptor, language: str, name: str = "LANGUAGE") -> Descriptor:
    """The same STT model in another language, validated."""
    _check_language(desc.model, language, name)
    return Descriptor(desc.kind, desc.model, language, desc.server)


def stt_chain(settings: Settings) -> list[Descriptor]:
    """The STT descriptors in the order they are tried: STT, then STT_FALLBACK; LANGUAGE, when
    set, is the language of every one of them."""
    primary = parse("stt", settings.descriptor("stt"), settings.label("stt"))
    chain = [primary]
    if settings.stt_fallback:
        label = settings.label("stt_fallback")
        for item in settings.stt_fallback.split(","):
            if not item.strip():
                raise ConfigError(
                    f"{label}={settings.stt_fallback!r} has an empty entry: separate "
                    f"descriptors with single commas"
                )
            chain.append(parse("stt", item, label))
        ids = [d.model.id for d in chain]
        if len(set(ids)) != len(ids):
            repeated = next(i for i in ids if ids.count(i) > 1)
            raise ConfigError(f"{label}: {repeated} appears twice in STT + STT_FALLBACK")
    if settings.language:
        label = settings.label("language")
        chain = [with_language(d, settings.language, f"{label} for {d.model.id}") for d in chain]
    return chain


def resolve(settings: Settings) -> dict[Kind, Descriptor]:
    """Parse and check the three descriptors (and the STT fallbacks) against the credentials
    and packages they need. The STT entry carries LANGUAGE when it is set."""
    chain = stt_chain(settings)
    resolved = {
        "stt": chain[0],
        "llm": parse("llm", settings.descriptor("llm"), settings.label("llm")),
        "tts": parse("tts", settings.descriptor("tts"), settings.label("tts")),
    }
    checks = [(settings.label("stt"), chain[0])]
    checks += [(settings.label("stt_fallback"), d) for d in chain[1:]]
    checks += [(settings.label(k), resolved[k]) for k in ("llm", "tts")]
    for label, desc in checks:
        _check_reachable(settings, desc, label)
        _check_package(desc, label)
    check_options(
        chain[0],
        settings.stt_options,
        source=settings.label("stt_options"),
        plugin=bool(_plugin_key(settings, chain[0])),
    )
    check_turns(settings)
    return resolved


# LiveKit's text end-of-turn model (livekit-plugins-turn-detector): its weights come from the
# Hugging Face Hub at `download-files` time, or it calls LiveKit Cloud (LIVEKIT_REMOTE_EOT_URL)
MULTILINGUAL_PACKAGE = "livekit-plugins-turn-detector==1.8.9"
NOISE_CANCELLATION_PACKAGE = "livekit-plugins-noise-cancellation==0.3.2"


def check_turns(settings: Settings) -> None:
    """Raise ConfigError unless the turn detector and noise cancellation chosen can run here."""
    if settings.turn_detection == "multilingual":
        label = _setting_label(settings, "turn_detection")
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
        label = _setting_label(settings, "noise_cancellation")
        if not (urlparse(settings.livekit_url).hostname or "").endswith(".livekit.cloud"):
            raise ConfigError(
                f"{label} is LiveKit Cloud's noise cancellation: it runs only in rooms on "
                f"LiveKit Cloud (LIVEKIT_URL=wss://<project>.livekit.cloud), not on this server; "
                f"unset NOISE_CANCELLATION"
            )
        if importlib.util.find_spec("livekit.plugins.noise_cancellation") is None:
            raise ConfigError(f"{label} needs `uv add {NOISE_CANCELLATION_PACKAGE}`")


def _setting_label(settings: Settings, name: str) -> str:
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


def _check_reachable(settings: Settings, desc: Descriptor, label: str) -> None:
    """Raise ConfigError unless the credentials and endpoint the model goes through are set."""
    if desc.realtime and not _plugin_key(settings, desc):
        raise ConfigError(
            f"{label}={desc} needs {desc.model.plugin_key}: realtime models talk to the "
            f"provider directly, with your own key"
        )
    if desc.model.route != "inference" or _plugin_key(settings, desc):
        return
    if not settings.inference_url:
        via = f", or set {desc.model.plugin_key} to use the plugin" if desc.model.plugin_key else ""
        raise ConfigError(
            f"{label}={desc} goes through LiveKit Inference: point LIVEKIT_URL at a "
            f"LiveKit Cloud project or LIVEKIT_INFERENCE_URL at a gateway "
            f"(python -m agent gateway){via}; or use {catalog.LOCAL_DEFAULTS[desc.kind]!r}"
        )
    if not (settings.livekit_api_key and settings.livekit_api_secret.get_secret_value()):
        raise ConfigError(
            f"{label}={desc} needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET for LiveKit Inference"
        )


def _check_package(desc: Descriptor, label: str = "") -> None:
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


def _plugin_key(settings: Settings, desc: Descriptor) -> str:
    key = desc.model.plugin_key
    return getattr(settings, key.lower()).get_secret_value() if key else ""


def check_options(
    desc: Descriptor, options: dict[str, Any], source: str = "STT_OPTIONS", plugin: bool = False
) -> None:
    """Raise ConfigError unless every option applies to the model and is in range; `source`
    names where the options came from in the message. `plugin`: the model runs on its
    provider's plugin (the user's own key), which takes only `plugin_options`."""
    for key, value in options.items():
        spec = desc.model.options.get(key)
        if spec is None:
            allowed = ", ".join(sorted(desc.model.options)) or "none"
            takers = sorted(m.id for m in catalog.STT_MODELS if key in m.options)
            where = f"; {', '.join(takers)} take it" if takers else ""
            raise ConfigError(
                f"{source}: {key!r} does not apply to {desc.model.id} (it takes: {allowed}){where}"
            )
        if plugin and key not in desc.model.plugin_options:
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
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(spec.choices)}")


# -- building the session's components -------------------------------------------------------
# One builder per (kind, route): adding a provider means a catalog row, not a new branch.


def _local_stt(desc: Descriptor, settings: Settings):
    # local engine name -> "module:class" of its plugin (imported only when chosen)
    plugins = {
        "moonshine-tiny": "agent.plugins.moonshine:MoonshineSTT",
        "whisper-tiny": "agent.plugins.whisper:WhisperSTT",
    }
    module, cls = plugins[desc.model.name].split(":")
    return getattr(importlib.import_module(module), cls)(language=desc.variant)


def _inference_stt(desc: Descriptor, settings: Settings, instance: bool = False):
    """The descriptor string when it says it all (LiveKit builds the client from it), else an
    inference.STT; with the provider key set, the provider's plugin."""
    from livekit.agents import inference

    if _plugin_key(settings, desc):  # the user's own provider account
        from livekit.plugins import cartesia

        return cartesia.STT(
            model=desc.model.name,  # explicit: the plugin would silently pick ink-2 for English
            language=desc.variant,
            api_key=_plugin_key(settings, desc),
            **({"base_url": settings.cartesia_base_url} if settings.cartesia_base_url else {}),
        )
    if not (instance or settings.stt_options or settings.livekit_inference_url):
        return str(desc)  # exactly the descriptor LiveKit's docs show
    return inference.STT(
        model=desc.model.id,
        language=desc.variant,
        extra_kwargs=dict(settings.stt_options),
        base_url=settings.inference_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
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


# realtime provider -> the plugin module whose `realtime.RealtimeModel` it is
REALTIME_PLUGINS = {
    "openai": "livekit.plugins.openai",
    "gemini": "livekit.plugins.google",
    "xai": "livekit.plugins.xai",
}


def _realtime_llm(desc: Descriptor, settings: Settings):
    plugin = importlib.import_module(REALTIME_PLUGINS[desc.model.name])
    return plugin.realtime.RealtimeModel(voice=desc.variant, api_key=_plugin_key(settings, desc))


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
    ("llm", "realtime"): _realtime_llm,
    ("tts", "local"): _local_tts,
    ("tts", "inference"): _inference_tts,
}


def build(desc: Descriptor, settings: Settings):
    """The STT/LLM/TTS object (or LiveKit descriptor string) an AgentSession takes."""
    return BUILDERS[(desc.kind, desc.model.route)](desc, settings)


def build_stt(settings: Settings, vad=None):
    """The session's STT: STT alone, or with STT_FALLBACK a FallbackSTT over the chain (`vad`
    segments audio for members that cannot stream)."""
    chain = stt_chain(settings)
    if len(chain) == 1:
        return build(chain[0], settings)
    from livekit.agents import inference

    from .fallback import FallbackSTT

    def member(desc: Descriptor, settings: Settings):
        if desc.model.route == "inference":  # the adapter needs objects, not strings
            return _inference_stt(desc, settings, instance=True)
        return build(desc, settings)

    bare = settings.model_copy(update={"stt_options": {}})  # options belong to the primary
    members = [member(chain[0], settings), *(member(d, bare) for d in chain[1:])]
    return FallbackSTT(members, vad=vad or inference.VAD())  # the VAD runs locally


def import_plugins(settings: Settings) -> None:
    """Import the LiveKit plugins these settings (or a live switch) may build. Plugins register
    on import, which LiveKit allows only on the main thread: not in a thread job's prewarm."""
    llm = resolve(settings)["llm"]
    modules = (
        {"livekit.plugins.cartesia"} if settings.cartesia_api_key.get_secret_value() else set()
    )
    if llm.realtime:
        modules.add(REALTIME_PLUGINS[llm.model.name])
    if llm.model.route == "openai":
        modules.add("livekit.plugins.openai")
    if settings.turn_detection == "multilingual":
        modules.add("livekit.plugins.turn_detector")
    if settings.noise_cancellation:
        modules.add("livekit.plugins.noise_cancellation")
    for module in sorted(modules):
        importlib.import_module(module)


def prewarm(settings: Settings) -> None:
    """Load every model the settings name (each STT of the chain too), once per process."""
    resolved = resolve(settings)
    descs = [*stt_chain(settings), resolved["tts"]]
    if not resolved["llm"].realtime:  # a realtime model connects when the session starts
        descs.append(resolved["llm"])
    for desc in descs:
        component = build(desc, settings)
        if hasattr(component, "prewarm") and not isinstance(component, str):
            component.prewarm()


def session_components(settings: Settings, resolved: dict[Kind, Descriptor], vad=None) -> dict:
    """AgentSession's stt/llm/tts arguments; a realtime LLM hears and speaks by itself."""
    llm = build(resolved["llm"], settings)
    if resolved["llm"].realtime:
        return {"llm": llm}
    return {"stt": build_stt(settings, vad), "llm": llm, "tts": build(resolved["tts"], settings)}


def _eot_detector(settings: Settings):
    from livekit.agents import inference

    # the audio end-of-turn model embedded in livekit-local-inference; left to itself LiveKit
    # would pick its cloud version ("v1") in dev/console mode
    return inference.TurnDetector(version="v1-mini")


def _multilingual_detector(settings: Settings):
    from livekit.plugins.turn_detector.multilingual import MultilingualModel

    return MultilingualModel()


# TURN_DETECTION -> what LiveKit's turn_handling["turn_detection"] gets (a mode, or a builder)
TURN_DETECTORS = {
    "eot": _eot_detector,
    "multilingual": _multilingual_detector,
    "vad": "vad",  # silence alone: MIN_ENDPOINTING_DELAY after the VAD's end of speech
    "stt": "stt",  # the STT's own end of speech (Moonshine's line end, a provider's endpointing)
    "manual": "manual",  # push-to-talk: agent/push_to_talk.py commits the turn
}


def turn_handling(settings: Settings) -> dict[str, Any]:
    """AgentSession's `turn_handling`: end of turn, endpointing delays, interruptions and
    preemptive generation, from the TURN_KEYS settings. Nothing here calls the cloud:
    interruption is VAD-based (LiveKit's adaptive mode is a cloud model)."""
    detector = TURN_DETECTORS[settings.turn_detection]
    return {
        "turn_detection": detector(settings) if callable(detector) else detector,
        "endpointing": dict(zip(("min_delay", "max_delay"), settings.endpointing, strict=True)),
        "interruption": {
            "enabled": settings.allow_interruptions,
            "mode": "vad",
            "min_duration": settings.min_interruption_duration,
            "min_words": settings.min_interruption_words,
        },
        "preemptive_generation": {
            "enabled": settings.preemptive_generation,
            "preemptive_tts": settings.preemptive_tts,
        },
    }


# NOISE_CANCELLATION -> the filter of livekit-plugins-noise-cancellation (LiveKit Cloud only)
NOISE_FILTERS = {"bvc": "BVC", "bvc-telephony": "BVCTelephony", "nc": "NC"}


def room_options(settings: Settings):
    """AgentSession.start's `room_options`: the caller's audio in 20 ms frames (LiveKit reads
    50 ms by default, which the end of every turn waits for), noise cancellation if chosen."""
    from livekit.agents import room_io

    audio = room_io.AudioInputOptions(frame_size_ms=20)
    if settings.noise_cancellation:
        plugin = importlib.import_module("livekit.plugins.noise_cancellation")
        audio.noise_cancellation = getattr(plugin, NOISE_FILTERS[settings.noise_cancellation])()
    return room_io.RoomOptions(audio_input=audio)


def describe(settings: Settings, resolved: dict[Kind, Descriptor]) -> str:
    """One log line: what the session will use and which layer set each value (no secrets)."""
    origin = "embedded local defaults" if settings.uses_local_defaults() else "configured"
    parts = [f"{k.upper()}={d} [{settings.source(k)}]" for k, d in resolved.items()]
    shown = {
        "language": settings.language,
        "stt_fallback": settings.stt_fallback,
        "stt_options": json.dumps(settings.stt_options, sort_keys=True)
        if settings.stt_options
        else "",
        "livekit_inference_url": settings.livekit_inference_url,
        "cartesia_base_url": settings.cartesia_base_url,
    }
    parts += [f"{k.upper()}={v} [{settings.source(k)}]" for k, v in shown.items() if v]
    turns = [k for k in (*TURN_KEYS, "noise_cancellation") if settings.source(k) != "default"]
    parts += [
        f"{k.upper()}={getattr(settings, k)} [{settings.source(k)}]"
        for k in dict.fromkeys(["turn_detection", *turns])
    ]
    parts += [
        f"{key}=set [{settings.source(key.lower())}]"
        for key in sorted({d.model.plugin_key for d in resolved.values() if d.model.plugin_key})
        if getattr(settings, key.lower()).get_secret_value()
    ]
    return f"session ({origin}): " + " ".join(parts) + f" (precedence: {' < '.join(LAYERS)})"
