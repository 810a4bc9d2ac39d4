"""Settings and their layers: where every value of a session comes from.

Settings are laid over each other in LAYERS order, each overriding the ones before it:

    default < .env < environment < cli < dispatch < participant

`cli` are the flags of `python -m agent start|dev|console|connect` (CLI_FLAGS), `dispatch` the
JSON metadata of the agent dispatch, `participant` the caller's attributes `stt` and
`language`. The last two apply per call (agent/switching.py) and may set only the keys in
LAYER_KEYS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from .. import catalog
from ..catalog import Kind
from ..errors import ConfigError

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
    "resume_false_interruption",
    "false_interruption_timeout",
    "aec_warmup_duration",
)
LAYER_KEYS = {
    "dispatch": (
        *("stt", "language", "languages", "stt_options", "stt_fallback", "llm", "tts"),
        *TURN_KEYS,
        "record_calls",  # this call's audio goes with its report (agent/reports.py)
    ),
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


# TURN_DETECTION -> (min, max) endpointing delay in seconds when not set, chosen with
# benchmarks/latency.py: a 400 ms pause mid-sentence must not end the turn, and the VAD dates
# the end of speech and hears it resume within ~20 ms (agent/plugins/onset_vad.py), so the turn
# waits 0.45 s of silence; the end-of-turn models wait `max` when they think the caller is not
# done (0.8: longer pauses are kept, p95 stays under 1.2 s). Push-to-talk and the STT's own end
# of speech need no wait.
ENDPOINTING_DEFAULTS: dict[str, tuple[float, float]] = {
    "auto": (0.45, 0.8),  # only to validate the settings: each call resolves it first
    "eot": (0.45, 0.8),
    "smart-turn": (0.45, 0.8),
    "multilingual": (0.45, 0.8),
    "vad": (0.45, 0.45),
    "stt": (0.0, 0.0),
    "manual": (0.0, 0.0),
}


class Settings(BaseModel):
    """Every setting: one field per environment variable (its name in capitals), in groups:
    where LiveKit and the providers are; what a session runs (config.resolve makes the
    call's Plan of these); the worker's own options; the services' (services/), which the
    worker never reads."""

    # -- where LiveKit and the providers are, and their keys
    livekit_url: str = ""
    livekit_api_key: str = ""
    livekit_api_secret: SecretStr = SecretStr("")
    llm_base_url: str = ""
    livekit_inference_url: str = ""
    cartesia_api_key: SecretStr = SecretStr("")
    cartesia_base_url: str = ""
    openai_api_key: SecretStr = SecretStr("")  # realtime/openai
    google_api_key: SecretStr = SecretStr("")  # realtime/gemini
    xai_api_key: SecretStr = SecretStr("")  # realtime/xai

    # -- the session: what a call runs (a dispatch may set LAYER_KEYS["dispatch"] of these,
    # the caller LAYER_KEYS["participant"])
    stt: str = ""  # empty: the default for what is reachable (catalog.*_DEFAULTS)
    llm: str = ""
    tts: str = ""
    # the language of every STT descriptor (primary and fallbacks), unless a higher layer chose
    # a descriptor with its own `:lang` (config.plan.language_applies)
    language: str = ""
    # a `multi` call on a local engine: the languages its detection picks from, e.g. "en,de,es"
    # (faster and surer than all of Whisper's 100); empty: any
    languages: str = ""
    stt_options: dict[str, Any] = Field(default_factory=dict)
    stt_fallback: str = ""  # comma-separated STT descriptors tried in order when the STT fails
    # turn-taking: LiveKit's turn_handling (see turn_handling()); defaults by measurement,
    # benchmarks/latency.py
    # auto: the measured default for the call's language (catalog.TURN_DETECTION_BY_LANGUAGE)
    turn_detection: Literal["auto", "eot", "smart-turn", "vad", "stt", "manual", "multilingual"] = (
        "auto"
    )
    # seconds of silence before the turn ends (min) or, when the end-of-turn model thinks the
    # user is not done, at most (max); unset: ENDPOINTING_DEFAULTS for the mode
    min_endpointing_delay: float | None = Field(None, ge=0, le=10)
    max_endpointing_delay: float | None = Field(None, ge=0, le=30)
    allow_interruptions: bool = True
    min_interruption_duration: float = Field(0.5, ge=0, le=10)
    min_interruption_words: int = Field(0, ge=0, le=50)
    preemptive_generation: bool = True
    preemptive_tts: bool = True
    # speech over the agent that gives no words (a cough, an "mhm" the STT drops) pauses it;
    # after this many seconds without words it resumes (true) or stays stopped (false)
    resume_false_interruption: bool = True
    false_interruption_timeout: float = Field(2.0, ge=0, le=10)
    # seconds of the agent's first speech in which LiveKit feeds the STT silence instead of
    # the caller (while a caller's echo canceller converges): whatever the caller says over
    # the greeting is lost. 0: browsers and phones cancel their own echo.
    aec_warmup_duration: float = Field(0.0, ge=0, le=10)
    noise_cancellation: Literal["", "bvc", "bvc-telephony", "nc"] = ""
    record_calls: bool = False  # the caller's and the agent's audio (ogg) with each report

    # -- the worker
    agent_name: str = "voice-agent"
    job_executor: Literal["thread", "process"] = "process"  # see agent/worker.py
    # concurrent calls of this worker; beyond them new calls are refused (agent/worker.py).
    # 5: the most a 2-core machine served at a single call's latency in every calibration run
    # (benchmarks/capacity.py)
    max_calls: int = Field(5, ge=1)
    # percent of the last 2 s this worker's threads waited for a core (summed over threads),
    # beyond which it takes no new call (agent/capacity.py); 0: MAX_CALLS alone. 50: on a
    # 2-core machine where a call cost 0.24 cores, 3 calls kept a single call's latency in 4
    # runs of 4, 4 calls in 2, 5 in none; their threads waited 29-33 % (2 calls), 46-53 % (3),
    # 76-134 % (4) (benchmarks.capacity, worker_cpu_wait_pct p50)
    cpu_pressure_limit: float = Field(50, ge=0)
    # beyond capacity a caller is answered in the room, by a short spoken and written message
    # (agent/busy.py), rather than left without an agent; its text (empty: the built-in one in
    # the call's language) and language (empty: the call's)
    busy_answer: bool = True
    busy_message: str = ""
    busy_language: str = ""
    agent_http_port: int = Field(8081, ge=0, le=65535)  # the worker's health endpoint; 0 = any
    # a report per call (agent/reports.py, docs/calls.md), pruned oldest first beyond either
    # limit (0: no limit)
    call_reports: bool = True
    call_reports_dir: str = ".run/calls"
    call_reports_max_mb: float = Field(500, ge=0)
    call_reports_max_days: float = Field(30, ge=0)
    prometheus_port: int = Field(0, ge=0, le=65535)  # the worker's /metrics; 0: none

    # -- the services: the browser page and its token endpoint (services/web.py)
    web_host: str = "127.0.0.1"
    web_port: int = Field(8000, ge=0, le=65535)
    token_endpoint_secret: SecretStr = SecretStr("")  # required to bind beyond loopback
    web_allowed_origins: str = ""  # comma-separated origins allowed cross-origin (CORS)
    # the local gateway's limits (services/gateway/limits.py, docs/security.md)
    gateway_max_upload_mb: float = Field(100, gt=0)  # a batch file's size
    gateway_max_audio_seconds: float = Field(1800, gt=0)  # a batch file's decoded duration
    gateway_batch_concurrency: int = Field(1, ge=1)  # files transcribed at once
    gateway_batch_queue: int = Field(4, ge=0)  # files waiting beyond them; more get a 429
    gateway_ws_idle_timeout: float = Field(300, gt=0)  # Cartesia closes idle sockets at 5 min
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _delays_in_order(self) -> Settings:
        low, high = self.endpointing_for(self.turn_detection)
        if high < low:
            raise ValueError(
                f"MAX_ENDPOINTING_DELAY={high} is below MIN_ENDPOINTING_DELAY={low} "
                f"(TURN_DETECTION={self.turn_detection}): the longest wait for the end of a "
                f"turn cannot be shorter than the shortest"
            )
        return self

    def endpointing_for(self, mode: str) -> tuple[float, float]:
        """(min, max) endpointing delay of turn detection `mode`: the settings, else the
        mode's measured defaults."""
        low, high = ENDPOINTING_DEFAULTS[mode]
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
        """Defaults < `.env` < the environment < CLI flags (`cli`).

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
                load_dotenv(path, override=False)
        # a value the environment holds exactly as .env has it came from .env (load_dotenv
        # copied it there, perhaps in a parent process): it stays in the .env layer
        if environ is None:
            env = {k: v for k, v in env.items() if from_file.get(k) != v}
        # many desktops export LANGUAGE for their translations (gettext's "en_US:en"); a
        # language code never holds "_" or ":", so such a value is the system's, not ours
        if any(c in env.get("LANGUAGE", "") for c in "_:"):
            del env["LANGUAGE"]
        settings = cls()
        for layer, source in ((".env", from_file), ("environment", env)):
            values = {}
            for name in cls.model_fields:
                raw = (source.get(name.upper()) or "").strip()
                if raw:
                    values[name] = raw
            settings = settings.with_layer(layer, values)
        return settings.with_layer("cli", cli or {})

    def with_layer(self, layer: str, values: dict[str, Any]) -> Settings:
        """These settings with `values` (setting name -> value) laid over them by `layer`."""
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
        cloud = host.endswith(catalog.LIVEKIT_CLOUD_DOMAIN)
        return f"https://agent-gateway{catalog.LIVEKIT_CLOUD_DOMAIN}/v1" if cloud else ""

    @property
    def inference_provider(self) -> str:
        """Who answers at inference_url: a key of catalog.INFERENCE_ENDPOINTS."""
        if not self.inference_url:
            return ""
        host = urlparse(self.inference_url).hostname or ""
        return "livekit-cloud" if host.endswith(catalog.LIVEKIT_CLOUD_DOMAIN) else "gateway"

    def inference_serves(self, kind: Kind) -> bool:
        return kind in catalog.INFERENCE_ENDPOINTS[self.inference_provider].serves

    def descriptor(self, kind: Kind) -> str:
        return (
            getattr(self, kind)
            or catalog.INFERENCE_ENDPOINTS[self.inference_provider].defaults[kind]
        )

    def uses_local_defaults(self) -> bool:
        defaults = catalog.INFERENCE_ENDPOINTS[self.inference_provider].defaults
        return not any(getattr(self, k) for k in ("stt", "llm", "tts")) and (
            defaults is catalog.LOCAL_DEFAULTS
        )


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
